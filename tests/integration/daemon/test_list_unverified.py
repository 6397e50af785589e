"""`vaultd list` says that what it shows is read without authenticating the records."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from vaultd.commands.list import UNVERIFIED_NOTE
from vaultd.ipc.client import DaemonClient
from vaultd.testing.harness import Installation

pytestmark = pytest.mark.hsm
MakeVault = Callable[..., Installation]


def test_list_marks_its_metadata_unverified(make_vault: MakeVault) -> None:
    inst = make_vault(start=False)
    lines = inst.vaultd("list").stdout.decode().splitlines()
    assert lines[0].split()[0] == "NAME"  # the header, then the records
    assert lines[1].split()[:2] == ["dev", "key_pair"]
    assert lines[-1] == UNVERIFIED_NOTE
    assert "unverified" in UNVERIFIED_NOTE


def test_with_a_prompted_pin_list_asks_the_unlocked_daemon_not_for_the_pin(
    make_vault: MakeVault,
) -> None:
    inst = make_vault(start=False)
    expected = json.loads(inst.vaultd("list", "--json").stdout)  # opening the token (PIN file)
    pin = Path(inst.config["pkcs11"]["pin_source"].removeprefix("file:")).read_text()
    inst.config["pkcs11"]["pin_source"] = "prompt"
    inst.write_config()
    inst.start_daemon()
    sealed = inst.vaultd("list", check=False)  # sealed: it opens the token, and asks the PIN
    assert sealed.returncode != 0 and sealed.stdout == b""
    assert sealed.stderr.count(b"\n") == 1, sealed.stderr
    DaemonClient(inst.socket).request("unlock", pin=pin)
    listed = inst.vaultd("list", "--json")  # no terminal and no PIN: the daemon answers
    assert json.loads(listed.stdout) == expected and listed.stderr == b""
    text = inst.vaultd("list").stdout.decode().splitlines()
    assert text[1].split()[:2] == ["dev", "key_pair"] and UNVERIFIED_NOTE in text
