"""docs/threat-model.md T29, always run: clients verify the daemon before they send a byte.

The listener is a plain socket in this process that records every byte it receives.  The peer
uid is made foreign by patching ``credproc.peer_uid`` (the one reader both clients use): a real
other-uid peer needs root, see tests/priv/test_socket_squat.py.
"""

from __future__ import annotations

import asyncio
import os
import posix
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from vaultd import credproc
from vaultd.errors import UnsafeSocket
from vaultd.ipc.client import AsyncDaemonClient, DaemonClient

CREDPROC = str(Path(credproc.__file__))


class Listener:
    """A Unix socket that accepts connections and keeps whatever arrives."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.received = b""
        self.connections = 0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        self._sock.listen(8)
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(0.5)
                try:
                    while chunk := conn.recv(65536):
                        self.received += chunk
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[Listener]:
    directory = tmp_path / "run"
    directory.mkdir(mode=0o700)
    served = Listener(directory / "vaultd.sock")
    yield served
    served.close()


@pytest.fixture
def foreign_peer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(credproc, "peer_uid", lambda sock: (4321, 4242))


def _run_credproc(path: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-I", "-S", CREDPROC, "--socket", str(path), "dev"],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o722, 0o1777])
def test_credproc_refuses_a_directory_others_can_write(listener: Listener, mode: int) -> None:
    listener.path.parent.chmod(mode)
    proc = _run_credproc(listener.path)
    assert (proc.returncode, proc.stdout) == (1, b"")
    err = proc.stderr.decode()
    assert err.startswith(f"vaultd: UNSAFE_SOCKET: refusing {listener.path}: its directory ")
    assert f"(mode {mode:o}) is writable by others" in err and err.count("\n") == 1
    assert listener.connections == 0 and listener.received == b""


def test_credproc_refuses_a_symlinked_directory(listener: Listener, tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(listener.path.parent)
    proc = _run_credproc(link / "vaultd.sock")
    assert (proc.returncode, proc.stdout) == (1, b"")
    assert b"UNSAFE_SOCKET" in proc.stderr and b"is not a directory (a symlink?)" in proc.stderr
    assert listener.received == b""


def test_credproc_names_the_owner_of_a_foreign_directory(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(credproc.posix, "geteuid", lambda: os.geteuid() + 1000)
    with pytest.raises(credproc.Failure) as failed:
        credproc.fetch(str(listener.path), "dev")
    assert failed.value.code == "UNSAFE_SOCKET"
    assert f"is owned by uid {os.geteuid()}, not by you (uid {os.geteuid() + 1000})" in str(
        failed.value
    )
    assert listener.received == b""


@pytest.mark.usefixtures("foreign_peer")
def test_credproc_sends_nothing_to_a_peer_of_another_uid(
    listener: Listener, capfd: pytest.CaptureFixture[str]
) -> None:
    assert credproc.main(["--socket", str(listener.path), "dev"]) == 1
    out, err = capfd.readouterr()
    assert out == ""
    assert err == (
        f"vaultd: UNSAFE_SOCKET: refusing {listener.path}: the process serving it (pid 4321) "
        f"is run by uid 4242, not by you (uid {os.geteuid()}); nothing was sent: another user "
        "may have planted it; remove it or use a private directory (XDG_RUNTIME_DIR or --socket)\n"
    )
    listener.close()
    assert listener.connections == 1 and listener.received == b""


@pytest.mark.usefixtures("foreign_peer")
def test_cli_and_tui_clients_send_nothing_to_a_peer_of_another_uid(listener: Listener) -> None:
    with pytest.raises(UnsafeSocket, match="is run by uid 4242"):
        DaemonClient(listener.path, timeout=5).request("unlock", pin="1234")
    with pytest.raises(UnsafeSocket, match="is run by uid 4242"):
        asyncio.run(AsyncDaemonClient(listener.path, timeout=5).request("status"))
    listener.close()
    assert listener.received == b""


def test_cli_client_refuses_a_directory_others_can_write(listener: Listener) -> None:
    listener.path.parent.chmod(0o777)
    with pytest.raises(UnsafeSocket, match=r"\(mode 777\) is writable by others"):
        DaemonClient(listener.path, timeout=5).request("approve", id="abc", code="123456")
    assert listener.connections == 0


def test_a_root_daemon_is_trusted_only_when_allowed(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a non-root user (patched), a root-owned directory and a root peer."""
    if os.geteuid() != 0:
        pytest.skip("the directory must be owned by root")
    monkeypatch.setattr(credproc.posix, "geteuid", lambda: 1000)
    monkeypatch.setattr(credproc, "peer_uid", lambda sock: (1, 0))
    with pytest.raises(UnsafeSocket, match="owned by uid 0, not by you"):
        DaemonClient(listener.path, timeout=1).request("status")
    assert credproc.daemon_uids(allow_root=True) == (1000, 0)
    assert posix.geteuid() == 1000
    with pytest.raises(credproc.Failure, match="closed the connection"):
        credproc.fetch(str(listener.path), "dev", allow_root=True)
    assert listener.received.endswith(b'"profile":"dev","interactive":false}')
