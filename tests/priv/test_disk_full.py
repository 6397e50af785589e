"""docs/threat-model.md T14 and F33: a full disk under a real daemon refuses releases and keeps the
store.

The data dir (store, state file, audit log and its head) is a real tmpfs of ``DISK_SIZE``
mounted for the test (root only), filled with a filler file until no block is free: only the
slack at the end of the files already there is left.  The SoftHSM2 token dir stays outside.
The daemon is a real `vaultd serve`, the client the stdlib credential_process client.  STS is
FakeSts: no STS behaviour is under test, it only issues the session that gets cached.

Pages are 4 KiB: a release record may still fit the last block of ``audit.log`` while the new
head file cannot get one: that release is served (its record is durable; the head lags, as
after a crash), and a later one that does not fit is refused.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import vaultd.credproc
from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import Installation, approve_pending, create_installation
from vaultd.testing.softhsm import find_softhsm_module

pytestmark = [pytest.mark.priv, pytest.mark.hsm]

DISK_SIZE = "512k"
CREDPROC = Path(vaultd.credproc.__file__)
KEY_ID = "AKIADISKFULL00000001"
SECRET = "DiskFullTestSecret0000000000000000000001"
NEW_KEY_ID = "AKIADISKFULL00000002"
NEW_SECRET = "DiskFullTestSecret0000000000000000000002"


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A ``DISK_SIZE`` tmpfs (0700) at a fresh dir; unmounted afterwards, also on failure."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    if find_softhsm_module() is None or shutil.which("softhsm2-util") is None:
        pytest.skip("SoftHSM2 is not installed (apt-get install softhsm2)")
    mount_point = tmp_path / "disk"
    mount_point.mkdir(mode=0o700)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE},mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


@pytest.fixture
def inst(tmp_path: Path, disk: Path) -> Iterator[Installation]:
    """An installation whose data dir is ``disk``, with ``dev`` stored and a daemon running."""
    with FakeSts() as sts:
        installation = create_installation(
            tmp_path / "vault", sts_url=sts.url, extra={"data_dir": str(disk)}
        )
        try:
            installation.add_key_pair("dev", KEY_ID, SECRET)
            installation.start_daemon()
            yield installation
        finally:
            installation.stop_daemon()  # before the unmount: the daemon holds files open


def credential_process(inst: Installation) -> subprocess.Popen[bytes]:
    """The stdlib client for profile ``dev``, as `credential_process` runs it."""
    return subprocess.Popen(
        [sys.executable, "-I", "-S", str(CREDPROC), "--socket", str(inst.socket), "dev"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )


def finish(proc: subprocess.Popen[bytes]) -> tuple[int, bytes, bytes]:
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


def fill(directory: Path) -> Path:
    """Write a filler file into ``directory`` until the file system refuses (ENOSPC)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for size in (65536, 4096, 1):
            block = b"\0" * size
            while True:
                try:
                    os.write(fd, block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return filler


def audit_events(inst: Installation, event: str) -> int:
    lines = (inst.data_dir / "audit.log").read_bytes().splitlines()
    return sum(1 for line in lines if json.loads(line)["event"] == event)


def verified_records(inst: Installation) -> int:
    """`vaultd audit verify` must pass; returns the number of records it checked."""
    done = inst.vaultd("audit", "verify", check=False)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[1])


def listed(inst: Installation) -> list[tuple[str, str]]:
    rows = json.loads(inst.vaultd("list", "--json").stdout)
    return sorted((row["name"], row["key_id"]) for row in rows)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith((".vaultd-tmp", ".tmp")))


def prime_and_fill(inst: Installation) -> Path:
    """Cache a `dev` session (one approval), then fill the data dir; returns the filler."""
    proc = credential_process(inst)
    approve_pending(inst, "246810", profile="dev")
    status, _, err = finish(proc)
    assert status == 0, err
    filler = fill(inst.data_dir)
    assert os.statvfs(inst.data_dir).f_bavail == 0
    return filler


def released_while_full(inst: Installation) -> int:
    """credential_process runs for the cached `dev` session until one is refused for the audit
    log (empty stdout, `AUDIT_UNAVAILABLE`, no record); a run served before that had its record
    durable (it fit the slack of audit.log's last block while the head could not move).
    Returns how many were served."""
    served = 0
    for _ in range(20):
        before = audit_events(inst, "release")
        status, out, err = finish(credential_process(inst))
        assert SECRET.encode() not in err and KEY_ID.encode() not in err
        if status == 0:
            assert audit_events(inst, "release") == before + 1, "served without its record"
            served += 1
            continue
        assert out == b"" and b"AUDIT_UNAVAILABLE" in err, err
        assert audit_events(inst, "release") == before
        return served
    raise AssertionError("a full disk never refused a release")


def test_full_disk_refuses_release_keeps_store_and_recovers(inst: Installation) -> None:
    """ENOSPC on tmpfs: `AUDIT_UNAVAILABLE`, store unchanged, no temp file; served once freed."""
    records_before = listed(inst)
    filler = prime_and_fill(inst)
    released = audit_events(inst, "release")

    served = released_while_full(inst)
    assert audit_events(inst, "release") == released + served
    records_full = verified_records(inst)
    released_full = audit_events(inst, "release")

    body = json.dumps({"AccessKeyId": NEW_KEY_ID, "SecretAccessKey": NEW_SECRET}).encode()
    added = inst.vaultd("add", "new", "--no-bind-fido2", input=body, check=False)
    assert added.returncode != 0
    assert b"No space left on device" in added.stderr and b"check the disk" in added.stderr
    assert NEW_SECRET.encode() not in added.stderr
    assert listed(inst) == records_before
    assert leftovers(inst.data_dir) == []

    filler.unlink()
    status, out, err = finish(credential_process(inst))
    assert status == 0, err
    assert json.loads(out)["AccessKeyId"] != KEY_ID
    assert audit_events(inst, "release") == released_full + 1
    assert verified_records(inst) > records_full
    assert leftovers(inst.data_dir) == []


def test_a_failed_head_update_leaves_no_temp_file(inst: Installation) -> None:
    """A release whose record fits audit.log's last block is served; the head update then
    fails, leaving no temp file and a head that lags (as after a crash): the log verifies."""
    prime_and_fill(inst)
    if not released_while_full(inst):
        pytest.skip("the record did not fit audit.log's last block: no head update was tried")
    assert leftovers(inst.data_dir) == []
    verified_records(inst)
