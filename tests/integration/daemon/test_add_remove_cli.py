"""`vaultd add` and `vaultd remove` as a person and a script use them (SoftHSM2 token)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

from vaultd.testing.harness import Installation, read_until, spawn_in_pty

MakeVault = Callable[..., Installation]
KEY_ID = "AKIAADDCLI0000000001"
SECRET = "CanarySecretKey0000000000000000000000001"  # the conftest's canary: scanned for


def _on_a_terminal(inst: Installation, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    """Run ``vaultd ARGS`` with a pty as its stdin and controlling terminal."""
    return spawn_in_pty([sys.executable, "-m", "vaultd", *args], inst.env)


def _names(inst: Installation) -> list[str]:
    return [row["name"] for row in json.loads(inst.vaultd("list", "--json").stdout)]


def test_add_takes_the_output_of_aws_iam_create_access_key(make_vault: MakeVault) -> None:
    inst = make_vault(start=False)
    created = {
        "AccessKey": {
            "UserName": "alice",
            "AccessKeyId": KEY_ID,
            "Status": "Active",
            "SecretAccessKey": SECRET,
            "CreateDate": "2026-12-01T10:00:00+00:00",
        }
    }
    done = inst.vaultd("add", "work", input=json.dumps(created).encode())
    assert b"stored key pair 'work'" in done.stdout
    assert "work" in inst.vaultd("list").stdout.decode()


def test_add_refuses_unknown_fields_inside_access_key(make_vault: MakeVault) -> None:
    inst = make_vault(start=False)
    bad = {"AccessKey": {"AccessKeyId": KEY_ID, "SecretAccessKey": SECRET, "Extra": 1}}
    done = inst.vaultd("add", "work", input=json.dumps(bad).encode(), check=False)
    assert done.returncode != 0
    assert b"BAD_REQUEST" in done.stderr and b"Extra" in done.stderr
    assert SECRET.encode() not in done.stderr


def test_a_duplicate_name_names_replace(make_vault: MakeVault) -> None:
    inst = make_vault(start=False)
    pair = json.dumps({"AccessKeyId": KEY_ID, "SecretAccessKey": SECRET}).encode()
    done = inst.vaultd("add", "dev", input=pair, check=False)
    assert done.returncode != 0
    assert b"--replace" in done.stderr


def test_add_on_a_terminal_shows_the_key_id_and_checks_each_field(make_vault: MakeVault) -> None:
    inst = make_vault(start=False)
    proc, tty = _on_a_terminal(inst, "add", "typed")
    assert b"AccessKeyId: " in read_until(tty, b"AccessKeyId: ")
    os.write(tty, b"ASIATEMPORARY0000001\n")  # a temporary key id: refused at once
    retry = read_until(tty, b"AccessKeyId: ")
    assert b"ASIATEMPORARY0000001" in retry  # echoed: the key id is not a secret
    assert b"long-lived key id" in retry and b"try again" in retry
    os.write(tty, KEY_ID.encode() + b"\n")
    assert b"(hidden)" in read_until(tty, b"(hidden): ")
    os.write(tty, SECRET.encode() + b"\n")
    rest = read_until(tty, b"stored")
    assert proc.wait(timeout=60) == 0
    os.close(tty)
    assert SECRET.encode() not in rest  # the secret is never echoed
    assert "typed" in _names(inst)


def test_remove_asks_on_a_terminal_and_keeps_the_record_unless_the_name_is_typed(
    make_vault: MakeVault,
) -> None:
    inst = make_vault(start=False)
    proc, tty = _on_a_terminal(inst, "remove", "dev")
    read_until(tty, b"confirm: ")
    os.write(tty, b"nope\n")
    assert proc.wait(timeout=60) != 0
    assert b"NOT_CONFIRMED" in read_until(tty, b"NOT_CONFIRMED")
    os.close(tty)
    assert "dev" in _names(inst)

    proc, tty = _on_a_terminal(inst, "remove", "dev")
    read_until(tty, b"confirm: ")
    os.write(tty, b"dev\n")
    assert proc.wait(timeout=60) == 0
    os.close(tty)
    assert "dev" not in _names(inst)


def test_remove_from_a_script_needs_yes(make_vault: MakeVault) -> None:
    inst = make_vault(start=False)
    done = inst.vaultd("remove", "dev", check=False)
    assert done.returncode != 0 and b"--yes" in done.stderr
    assert "dev" in _names(inst)
    inst.vaultd("remove", "--yes", "dev")
    assert "dev" not in _names(inst)
