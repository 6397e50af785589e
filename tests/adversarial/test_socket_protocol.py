"""Hostile socket clients against a real `vaultd serve` (docs/threat-model.md T3, T17; F1-F5).

Each attack runs while a good client keeps being served from the cache.  The daemon of the
module has a 3 s read deadline, a 5 s request deadline and a cap of 64 connections.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from vaultd.ipc.protocol import CREDENTIALS_PREFIX
from vaultd.testing.harness import Installation, wait_for

from .conftest import (
    SERVED_CAP,
    MakeVault,
    credproc,
    finish,
    is_alive,
    patient_credentials,
    raw_connect,
    read_frame,
    record_output,
    served_from_cache,
)

pytestmark = pytest.mark.hsm
MIB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def daemon_pid(inst: Installation) -> int:
    assert inst.daemon is not None
    return inst.daemon.pid


def error_code(body: bytes | None) -> str | None:
    """The error code of an error frame (None when the server closed without one)."""
    if body is None:
        return None
    record_output(body)
    msg = json.loads(body)
    assert msg["ok"] is False
    return str(msg["error"]["code"])


def closed_by_server(sock: socket.socket) -> bool:
    """True when the server has closed its end (EOF or reset)."""
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def test_length_prefix_2_32_minus_1_is_refused_at_the_header(served: Installation) -> None:
    """Row 3: FRAME_TOO_LARGE from the header alone, nothing allocated, connection closed."""
    pid = daemon_pid(served)
    before = rss_bytes(pid)
    with raw_connect(served.socket) as sock:
        sock.sendall(b"\xff\xff\xff\xff")
        assert error_code(read_frame(sock)) == "FRAME_TOO_LARGE"
        assert closed_by_server(sock)
    assert rss_bytes(pid) - before < 16 * MIB
    served_from_cache(served)


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        (b"", "FRAME_TOO_LARGE"),  # the stream's first 4 bytes ("xxxx") read as a length
        (b"\x00\x01\x00\x00" + b'{"v":1,"op":"credentials","profile":"', "BAD_REQUEST"),
    ],
    ids=["garbage-header", "max-frame-then-unterminated-json"],
)
def test_100_mb_without_a_delimiter_is_cut_off(
    served: Installation, prefix: bytes, expected: str
) -> None:
    """Row 3: a 100 MB stream is refused after at most one frame; RSS stays flat (< 50 MB)."""
    pid = daemon_pid(served)
    before = rss_bytes(pid)
    chunk = b"x" * MIB
    sent = 0
    with raw_connect(served.socket) as sock:
        try:
            sock.sendall(prefix)
            while sent < 100 * MIB:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = read_frame(sock)
    assert sent < 16 * MIB  # the daemon stopped reading long before 100 MB
    assert error_code(reply) == expected
    assert rss_bytes(pid) - before < 50 * MIB
    assert is_alive(pid)
    served_from_cache(served)


GARBAGE = [
    b'{"v":1,"op":"status"',  # truncated
    b'{"v":1,"op":"st\xffatus"}',  # invalid UTF-8
    b'{"v":1,"op":"credentials","profile":NaN}',
    b'{"v":1,"v":1,"op":"status"}',  # duplicate key
    b'{"v":1,"op":"status"} {}',  # trailing bytes
    b'[{"v":1,"op":"status"}]',  # top-level array
    b'{"v":1,"op":"status","extra":1}',  # unknown field
    b'{"v":1,"op":"credentials","profile":1}',  # wrong type
    b'{"v":1,"op":"credentials","profile":"' + b"a" * 8192 + b'"}',
    b'{"v":1,"op":"credentials","profile":"../dev"}',
    b'{"v":1,"op":"credentials","profile":"d\\u0000ev"}',
    b'{"v":1,"op":"credentials","profile":"dev","interactive":1}',
    b'{"v":2,"op":"status"}',
    b"",
    b"\x00" * 64,
]


@pytest.mark.parametrize("body", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_frames_get_bad_request_then_close(served: Installation, body: bytes) -> None:
    """Rows 1-2: BAD_REQUEST naming the problem, connection closed, the daemon keeps serving."""
    with raw_connect(served.socket) as sock:
        sock.sendall(frame(body))
        reply = read_frame(sock)
        assert error_code(reply) == "BAD_REQUEST"
        assert reply is not None and b"8192" not in reply and b"../" not in reply
        assert closed_by_server(sock)
    served_from_cache(served)


def test_slowloris_and_silent_clients_are_cut_off_while_others_are_served(
    served: Installation,
) -> None:
    """Row 4: 1 byte per second never finishes a frame before the 5 s request deadline.

    A silent client is closed at the 3 s read deadline; good clients are served meanwhile.
    """
    body = frame(b'{"v":1,"op":"status"}')
    outcome: dict[str, int] = {}

    def drip() -> None:
        with raw_connect(served.socket, timeout=30) as sock:
            for sent in range(len(body)):
                try:
                    sock.sendall(body[sent : sent + 1])
                except (BrokenPipeError, ConnectionResetError):
                    break
                time.sleep(1.0)
            outcome["sent"] = sent
            outcome["closed"] = int(closed_by_server(sock))

    silent = raw_connect(served.socket, timeout=30)
    dripper = threading.Thread(target=drip)
    dripper.start()
    served_count = 0
    while dripper.is_alive() and served_count < 50:
        served_from_cache(served)
        served_count += 1
    dripper.join()
    with silent:
        assert closed_by_server(silent)
    assert outcome["closed"] == 1
    assert outcome["sent"] < len(body) - 1  # cut off mid-frame, never answered
    assert served_count >= 1


@contextmanager
def idle_connections(path: Path, count: int) -> Iterator[list[socket.socket]]:
    socks = [raw_connect(path, timeout=30) for _ in range(count)]
    try:
        yield socks
    finally:
        for sock in socks:
            sock.close()


def test_idle_connections_up_to_the_cap_then_busy_then_recovery(served: Installation) -> None:
    """Row 5: cap - 1 idle clients leave room for a good one; at the cap, fast BUSY."""
    with idle_connections(served.socket, SERVED_CAP - 1):
        # Accepted after all the idle ones, so they were admitted (in-process: quick enough
        # for the idle ones to be still open, well inside the 3 s read deadline).
        assert patient_credentials(served.socket).startswith(CREDENTIALS_PREFIX)
        with idle_connections(served.socket, 1), raw_connect(served.socket) as probe:
            assert error_code(read_frame(probe)) == "BUSY"
            assert closed_by_server(probe)
    served_from_cache(served)  # recovered without a restart


@pytest.mark.parametrize("change", ["replaced", "chmod-0666", "chown"])
def test_socket_replaced_or_reowned_seals_the_daemon(make_vault: MakeVault, change: str) -> None:
    """T3: the housekeeping check (every second) seals and stops the daemon; audited."""
    inst = make_vault()
    path = inst.socket
    if change == "replaced":
        impostor = path.with_name("impostor.sock")
        squatter = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        squatter.bind(str(impostor))
        os.replace(impostor, path)
    elif change == "chmod-0666":
        os.chmod(path, 0o666)
    else:
        if os.geteuid() != 0:
            pytest.skip("chown to another uid needs root")
        os.chown(path, 65534, 65534)
    assert inst.daemon is not None
    assert wait_for(lambda: inst.daemon is not None and inst.daemon.poll() is not None)
    assert path.exists()  # the daemon never unlinks a socket that is no longer its own
    records = [json.loads(x) for x in (inst.data_dir / "audit.log").read_text().splitlines()]
    assert {"event": "lock", "outcome": "sealed"}.items() <= records[-1].items()
    assert "replaced or re-owned" in inst.log()
    if change == "replaced":
        squatter.close()


def test_clients_wait_for_a_full_listen_backlog(make_vault: MakeVault) -> None:
    """Row 5: with the daemon stopped and its backlog full, clients wait, then are served."""
    inst = make_vault()
    pid = daemon_pid(inst)
    fillers: list[socket.socket] = []
    os.kill(pid, signal.SIGSTOP)
    try:
        while True:  # fill the listen backlog of the stopped daemon
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                sock.connect(str(inst.socket))
            except BlockingIOError:
                sock.close()
                break
            fillers.append(sock)
        status = subprocess.Popen(
            [sys.executable, "-m", "vaultd", "status"],
            env=inst.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        client = credproc(inst, "nope")
        for proc in (status, client):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)  # a waiting client is still running; a failing one is done
    finally:
        os.kill(pid, signal.SIGCONT)
        for sock in fillers:
            sock.close()
    code, _, err = finish(status)
    assert code == 0, err
    code, _, err = finish(client)
    assert b"UNKNOWN_PROFILE" in err
