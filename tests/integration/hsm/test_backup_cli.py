"""`vaultd init`, `keys list/add/remove/recover` and `rekey` on a real SoftHSM2 installation;
`rekey` SIGKILLed at every write step (the atomic writer's ``crash_hook``), then run again."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from vaultd.testing.harness import Installation, create_installation

pytestmark = pytest.mark.hsm

WORDS = re.compile(r"^    ([A-Z2-7]{5}(?:-[A-Z2-7]{1,5}){10})$", re.M)
CHILD = r"""
import os, signal, sys
from vaultd import cli
from vaultd.store import atomic

def hook(name):
    if name == sys.argv[1]:
        os.kill(os.getpid(), signal.SIGKILL)
atomic.crash_hook = hook
sys.exit(cli.main(sys.argv[2:]))
"""


@pytest.fixture
def inst(tmp_path: Path) -> Iterator[Installation]:
    yield create_installation(tmp_path / "i")  # init --no-backup: the format of the last release


def _add_recovery(inst: Installation) -> str:
    out = inst.vaultd("keys", "add", "--recovery").stdout.decode()
    found = WORDS.findall(out)
    assert len(found) == 1, out
    return found[0]


def test_keys_list_add_remove_and_recover(inst: Installation) -> None:
    inst.add_key_pair("work", "AKIAWORK000000000001", "WorkSecret" + "0" * 30)
    assert inst.vaultd("keys", "list").stdout.decode().startswith("token")
    words = _add_recovery(inst)
    listed = inst.vaultd("keys", "list").stdout.decode().splitlines()
    assert [line.split()[0] for line in listed] == ["token", "recovery"]
    assert words not in (inst.root / "data" / "store.vault").read_text()
    token_id = listed[0].split()[1]
    refused = inst.vaultd("keys", "remove", token_id, check=False)
    assert refused.returncode != 0 and b"cannot be removed" in refused.stderr
    bad = inst.vaultd("keys", "recover", input=b"AAAAA-BBBBB\n", check=False)
    assert bad.returncode != 0 and b"characters" in bad.stderr
    assert len(bad.stderr.decode().strip().splitlines()) == 1
    inst.config["pkcs11"]["key_label"] = "replacement-kek"  # the old key is "lost"
    inst.write_config()
    done = inst.vaultd("keys", "recover", input=words.encode() + b"\n")
    assert b"recovered 1 records" in done.stdout
    assert inst.vaultd("list").returncode == 0
    rid = inst.vaultd("keys", "list").stdout.decode().splitlines()[1].split()[1]
    inst.vaultd("keys", "remove", rid)
    assert inst.vaultd("keys", "list").stdout.decode().count("\n") == 1


@pytest.mark.parametrize(
    "point", ["before_write", "mid_write", "after_fsync", "before_rename", "after_rename"]
)
def test_rekey_killed_at_each_step_opens_and_a_rerun_completes(
    inst: Installation, point: str
) -> None:
    inst.add_key_pair("work", "AKIAWORK000000000001", "WorkSecret" + "0" * 30)
    _add_recovery(inst)
    killed = subprocess.run(
        [sys.executable, "-c", CHILD, point, "rekey"],
        env=inst.env,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=90,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL
    assert b"work" in inst.vaultd("list").stdout  # the old or the new generation opens
    assert b"re-sealed 1 records to 2 key(s)" in inst.vaultd("rekey").stdout
    assert inst.vaultd("list").returncode == 0
