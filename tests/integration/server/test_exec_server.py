"""`vaultd exec --server` end to end: real daemon (SoftHSM2, `vaultd serve`), FakeSts as STS,
boto3 in the child getting its session from the endpoint, approval sent from the test."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import vaultd.credproc
from vaultd.aws.container_endpoint import CredentialServer, fetch_from_daemon
from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import Installation, approve_pending

from .conftest import ACCESS_KEY_ID, SECRET, MakeVault

pytestmark = pytest.mark.hsm

CHILD = """
import os, sys, boto3
assert not any(k in os.environ for k in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_SESSION_TOKEN"))
for i in range(2):
    session = boto3.Session(region_name="us-east-1")
    arn = session.client("sts").get_caller_identity()["Arn"]
    print(session.get_credentials().access_key, arn, flush=True)
    if i == 0 and len(sys.argv) > 1:
        sys.stdin.readline()
"""


def exec_server(inst: Installation, *command: str) -> subprocess.Popen[bytes]:
    env = {**inst.env, "AWS_PROFILE": "dev", "AWS_ACCESS_KEY_ID": "AKIASTALE0000000000"}
    return subprocess.Popen(
        [sys.executable, "-m", "vaultd", "exec", "--server", "dev", "--", *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # no controlling terminal: approval comes from the test
    )


def test_boto3_in_the_child_uses_the_endpoint(make_vault: MakeVault, fake_sts: FakeSts) -> None:
    inst = make_vault()
    proc = exec_server(inst, sys.executable, "-c", CHILD)
    approve_pending(inst, "123456", profile="dev")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = [line.split() for line in out.decode().splitlines()]
    assert len(lines) == 2 and lines[0] == lines[1]
    key_id, arn = lines[0]
    assert key_id.startswith("ASIA") and key_id != ACCESS_KEY_ID
    assert arn.startswith("arn:aws:")
    assert fake_sts.calls("GetSessionToken") == 1
    identity_calls = [r for r in fake_sts.requests if r.action == "GetCallerIdentity"]
    assert [r.access_key_id for r in identity_calls] == [key_id, key_id]
    for stream in (out, err):
        assert SECRET.encode() not in stream and ACCESS_KEY_ID.encode() not in stream


def test_exit_status_signals_and_a_missing_command(make_vault: MakeVault) -> None:
    inst = make_vault()
    child = (
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))\n"
        "print(os.environ['AWS_CONTAINER_CREDENTIALS_FULL_URI'], flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = exec_server(inst, sys.executable, "-c", child)
    approve_pending(inst, "123456", profile="dev")
    assert proc.stdout is not None
    url = urlsplit(proc.stdout.readline().decode().strip())
    proc.send_signal(signal.SIGTERM)  # to vaultd exec only: the child gets it by forwarding
    proc.communicate(timeout=30)
    assert proc.returncode == 3
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((url.hostname, url.port), timeout=2).close()
    # The daemon's cache answers the second run at once; SIGINT kills a Python child by signal.
    proc = exec_server(inst, sys.executable, "-c", child.replace("SIGTERM", "SIGUSR1"))
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGINT
    done = exec_server(inst, sys.executable, "-c", "raise SystemExit(7)")
    done.communicate(timeout=30)
    assert done.returncode == 7
    missing = exec_server(inst, "/nonexistent/tool")
    out, err = missing.communicate(timeout=30)
    assert missing.returncode != 0 and out == b""
    assert b"BAD_REQUEST" in err and b"/nonexistent/tool" in err


class ShiftedClock:
    """Real time plus ``offset`` seconds, so a test can age the cached session."""

    offset = 0.0

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)

    def monotonic(self) -> float:
        return 0.0


def test_refetch_when_the_session_nears_expiry(
    make_vault: MakeVault, fake_sts: FakeSts, tmp_path: Path
) -> None:
    """The server in-process with a shifted clock, the real daemon behind it, and a boto3
    child whose second Session calls the endpoint again after the session has 'aged'."""
    inst = make_vault()
    credproc = [sys.executable, "-I", "-S", vaultd.credproc.__file__, "--socket", str(inst.socket)]
    primer = subprocess.Popen(
        [*credproc, "dev"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True
    )
    approve_pending(inst, "123456", profile="dev")
    expiration = json.loads(primer.communicate(timeout=60)[0])["Expiration"]
    clock = ShiftedClock()
    server = CredentialServer(lambda: fetch_from_daemon(str(inst.socket), "dev"), clock=clock)
    with server:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, "wait"],
            env=server.environment(inst.env, "dev"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert child.stdin is not None and child.stdout is not None
        first = child.stdout.readline().split()
        assert server.source.fetches == 1
        left = datetime.fromisoformat(expiration) - datetime.now(UTC)
        clock.offset = left.total_seconds() - 14 * 60  # 14 min left: below the floor
        child.stdin.write(b"\n")
        child.stdin.flush()
        second = child.stdout.readline().split()
        _, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert server.source.fetches == 2
    assert first[0] == second[0]  # the daemon's cache (real time) still had a long session
    assert fake_sts.calls("GetSessionToken") == 1
    assert fake_sts.calls("GetCallerIdentity") == 2
