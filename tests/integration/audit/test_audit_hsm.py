"""The audit log with a real token: SoftHSM2 MACs the records, `vaultd audit verify` checks them,
and a real daemon refuses to release anything while its audit log cannot be written (T14).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from vaultd.errors import AuditRecordTampered
from vaultd.keys.pkcs11 import TokenKey
from vaultd.store.audit import AuditLog, rotated_files, verify
from vaultd.testing.clock import FakeClock
from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import MFA_SERIAL, Installation, create_installation
from vaultd.testing.softhsm import SoftHsmToken, create_token, reinitialize

from .conftest import require_softhsm

pytestmark = pytest.mark.hsm

KEY_LABEL = "vaultd-kek"
ACCESS_KEY_ID = "AKIACANARY0000000002"
SECRET = "CanarySecretKey0000000000000000000000002"

# `vaultd ARGS` through cli.main, with the audit commands registered even before
# cli.COMMAND_MODULES lists them.
CLI = (
    "import sys; from vaultd import cli; "
    "cli.COMMAND_MODULES = tuple(dict.fromkeys((*cli.COMMAND_MODULES, 'audit'))); "
    "sys.exit(cli.main())"
)


def vaultd_cli(inst: Installation, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-c", CLI, *args],
        env=inst.env,
        capture_output=True,
        timeout=60,
        check=False,
    )


def open_vault(token: SoftHsmToken) -> TokenKey:
    return TokenKey.open(token.module_path, token.label, KEY_LABEL, token.user_pin, create_key=True)


def flip(path: Path, line: int, old: bytes, new: bytes) -> None:
    """Replace ``old`` by ``new`` (same length) inside line ``line`` of ``path``."""
    lines = path.read_bytes().splitlines(keepends=True)
    assert len(old) == len(new) and old in lines[line - 1]
    lines[line - 1] = lines[line - 1].replace(old, new, 1)
    path.write_bytes(b"".join(lines))


def test_token_macs_verify_across_rotation_and_reject_edits_and_other_keys(
    softhsm: SoftHsmToken, tmp_path: Path
) -> None:
    vault = open_vault(softhsm)
    try:
        path = tmp_path / "audit.log"
        log = AuditLog(path, vault.mac, FakeClock(), max_bytes=600)
        for i in range(8):
            log.record("request", {"profile": f"p{i}", "client": {"pid": 100 + i}})
        assert len(rotated_files(path)) >= 2
        assert verify(path, vault.mac_verify) == 8
        first = rotated_files(path)[0]
        flip(first, 2, b'"profile":"p1"', b'"profile":"p7"')
        with pytest.raises(AuditRecordTampered) as info:
            verify(path, vault.mac_verify)
        assert (info.value.path, info.value.line, info.value.seq) == (str(first), 2, 2)
        assert info.value.reason == "the MAC does not match"
        flip(first, 2, b'"profile":"p7"', b'"profile":"p1"')
        assert verify(path, vault.mac_verify) == 8
    finally:
        vault.close()

    other = create_token(tmp_path / "softhsm", label="another-token")
    reinitialize(other.module_path)
    stranger = open_vault(other)
    try:
        with pytest.raises(AuditRecordTampered) as info:
            verify(path, stranger.mac_verify)
        assert (info.value.line, info.value.seq) == (1, 1)
    finally:
        stranger.close()


@pytest.fixture
def installation(tmp_path: Path, fake_sts: FakeSts) -> Installation:
    """A real installation with a stored key pair; ``touchy`` is refused (no FIDO2 set up)."""
    require_softhsm()
    inst = create_installation(
        tmp_path / "vault",
        profiles={
            "dev": {"credentials": "dev", "mfa_serial": MFA_SERIAL},
            "touchy": {"credentials": "dev", "mfa_serial": MFA_SERIAL, "approval": "touch"},
        },
        sts_url=fake_sts.url,
    )
    inst.add_key_pair("dev", ACCESS_KEY_ID, SECRET)
    return inst


def test_verify_passes_then_names_a_flipped_record(installation: Installation) -> None:
    inst = installation
    with inst:
        inst.start_daemon()
        for profile, code in (("nope", "UNKNOWN_PROFILE"), ("touchy", "APPROVAL_UNAVAILABLE")):
            refused = inst.vaultd("credential-process", profile, check=False)
            assert refused.returncode != 0
            assert refused.stdout == b""
            assert code.encode() in refused.stderr
        tail = vaultd_cli(inst, "audit", "tail", "-n", "20")
        assert tail.returncode == 0, tail.stderr
        assert re.search(rb"  request  touchy  -  pid \d+ ", tail.stdout), tail.stdout
        inst.stop_daemon()

    audit_log = inst.data_dir / "audit.log"
    events = [json.loads(line)["event"] for line in audit_log.read_bytes().splitlines()]
    # `vaultd add` of the fixture's key pairs is audited first (issue 13), then the daemon starts
    start = events.index("start") + 1
    assert set(events[: start - 1]) == {"record_added"} and "request" in events

    ok = vaultd_cli(inst, "audit", "verify")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.decode() == f"OK: {len(events)} records, chain intact\n"

    flip(audit_log, start, b'"event":"start"', b'"event":"stbrt"')
    bad = vaultd_cli(inst, "audit", "verify")
    assert bad.returncode != 0
    assert bad.stdout == b""
    err = bad.stderr.decode()
    assert err.startswith("vaultd: AUDIT_TAMPERED: ")
    assert f"{audit_log}, line {start}, seq {start}: the MAC does not match" in err
    assert SECRET not in err


def test_daemon_refuses_to_release_while_the_audit_log_cannot_be_written(
    installation: Installation, fake_sts: FakeSts
) -> None:
    """A FIFO with no reader at the audit path: the writer fails fast instead of blocking."""
    inst = installation
    audit_log = inst.data_dir / "audit.log"
    with inst:
        daemon = inst.start_daemon()
        saved = audit_log.with_name("audit.log.saved")
        audit_log.rename(saved)
        os.mkfifo(audit_log, 0o600)
        for _ in range(2):  # the first refusal leaves the daemon refusing, not stuck
            refused = inst.vaultd("credential-process", "dev", check=False)
            assert refused.returncode != 0
            assert refused.stdout == b""
            assert b"AUDIT_UNAVAILABLE" in refused.stderr
            assert SECRET.encode() not in refused.stderr
        assert daemon.poll() is None
        assert fake_sts.calls() == 0
        assert inst.stop_daemon() == 0
    saved_events = [json.loads(x)["event"] for x in saved.read_bytes().splitlines()]
    assert saved_events[-1] == "start" and "request" not in saved_events  # before: `vaultd add`


def test_concurrent_threads_and_coroutines_commit_token_maced_batches(
    softhsm: SoftHsmToken, tmp_path: Path
) -> None:
    """Group commit with the token's MAC: every record of every batch verifies in the token."""
    vault = open_vault(softhsm)
    try:
        path = tmp_path / "audit.log"
        log = AuditLog(path, vault.mac, FakeClock(), max_bytes=4000)

        def thread_records(k: int) -> None:
            for i in range(15):
                log.record("request", {"profile": f"t{k}", "n": i})

        async def coroutine_records() -> None:
            await asyncio.gather(
                *(log.record_async("release", {"n": i}, timeout=10) for i in range(20))
            )

        threads = [threading.Thread(target=thread_records, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        asyncio.run(coroutine_records())
        for t in threads:
            t.join(30)
        assert len(rotated_files(path)) >= 1
        assert verify(path, vault.mac_verify) == 80
    finally:
        vault.close()
