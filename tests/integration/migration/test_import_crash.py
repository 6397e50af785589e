"""`vaultd import aws-config` SIGKILLed at every step, then run again: nothing is lost.

A child process runs the command with the two fault hooks (the import's ``step_hook`` and the
atomic writer's ``crash_hook``) set to SIGKILL itself at the Nth point; N grows until a run
completes.  After each kill the key pair is still somewhere (plaintext file, backup or sealed
record) and a plain re-run finishes the import.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from vaultd.testing.harness import Installation, approve_pending

from .conftest import AWS_CONFIG, AWS_CREDENTIALS, SECRET, home_env

pytestmark = [pytest.mark.hsm, pytest.mark.sts]

CHILD = r"""
import os, signal, sys
from vaultd import cli
from vaultd.commands import import_aws
from vaultd.store import atomic

left = int(sys.argv[1])
def hook(name):
    global left
    if name in ("mid_write", "before_rename") or not name.startswith(("before", "after", "mid")):
        left -= 1
        if left == 0:
            os.kill(os.getpid(), signal.SIGKILL)
import_aws.step_hook = atomic.crash_hook = hook
sys.exit(cli.main(sys.argv[2:]))
"""


def run_killed_at(inst: Installation, point: int, *args: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(point), "import", "aws-config", *args],
        env=home_env(inst),
        capture_output=True,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        timeout=90,
        check=False,
    )
    return done.returncode


def finish_import(inst: Installation, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vaultd", "import", "aws-config", *args],
        env=home_env(inst),
        capture_output=True,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0 or b"DAEMON_NOT_RUNNING" in done.stderr, done.stderr


def records(inst: Installation) -> list[str]:
    return [r["name"] for r in json.loads(inst.vaultd("list", "--json").stdout)]


def holding_the_secret(home: Path) -> list[str]:
    return sorted(
        p.name for p in home.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()
    )


def test_killed_at_every_step_a_rerun_completes_and_no_key_is_lost(vault: Installation) -> None:
    aws = Path(home_env(vault)["HOME"]) / ".aws"
    baseline = vault.config_path.read_text()
    # Without a daemon: sealing, the vaultd config and ~/.aws/config.
    point = 1
    while run_killed_at(vault, point, "--apply") == -signal.SIGKILL:
        assert "credentials" in holding_the_secret(aws)
        finish_import(vault, "--apply")
        assert records(vault) == ["jon"]
        assert vault.config_path.read_text().count("[profiles.") == 4
        assert (aws / "config").read_text().count("credential_process = ") == 4
        (aws / "config").write_text(AWS_CONFIG)
        vault.config_path.write_text(baseline)
        vault.vaultd("remove", "--yes", "jon")
        point += 1
    assert point > 6  # sealed, vaultd-config and aws-config, each with its atomic writes
    # With the daemon (it reads the profiles at start): test call, backup, removal.
    vault.start_daemon()
    approver = threading.Thread(target=approve_pending, args=(vault, "123456"), kwargs={"wait": 90})
    approver.start()
    point = 1
    while run_killed_at(vault, point, "--apply", "--remove-plaintext") == -signal.SIGKILL:
        held = holding_the_secret(aws)
        assert "credentials" in held or any("vaultd-backup" in name for name in held), held
        finish_import(vault, "--apply", "--remove-plaintext")
        held = holding_the_secret(aws)
        assert len(held) == 1 and held[0].startswith("credentials.vaultd-backup-"), held
        (aws / "credentials").write_text(AWS_CREDENTIALS)
        for backup in aws.glob("*.vaultd-backup-*"):
            backup.unlink()
        point += 1
    approver.join()
    assert point > 4  # tested, backup and removal with their atomic writes
    assert records(vault) == ["jon"]
