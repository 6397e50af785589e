"""The sync and async clients against a real in-test server; peer credentials; /proc facts."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from vaultd import credproc, errors
from vaultd.ipc.client import (
    NOT_RUNNING_MESSAGE,
    AsyncDaemonClient,
    DaemonClient,
    default_socket_path,
)
from vaultd.ipc.peercred import PeerCred, peer_credentials
from vaultd.system.procinfo import describe_process, printable


async def test_sync_client_returns_fields_and_raises_typed_errors(
    sock_path: Path, recorder: Any, serve: Any
) -> None:
    client = DaemonClient(sock_path, timeout=10)
    async with serve(sock_path, recorder):
        status = await asyncio.to_thread(client.request, "status")
        with pytest.raises(errors.RateLimited) as limited:
            await asyncio.to_thread(client.request, "credentials", profile="limited")
        with pytest.raises(errors.UnsafePermissions) as unsafe:
            await asyncio.to_thread(client.request, "lock")
    assert status == {"pid": os.getpid(), "uid": os.geteuid()}
    assert limited.value.retry_after == 30.0
    assert limited.value.code == "RATE_LIMITED"
    assert unsafe.value.path == "/x"


async def test_async_client_raises_typed_errors(sock_path: Path, recorder: Any, serve: Any) -> None:
    async with serve(sock_path, recorder):
        with pytest.raises(errors.InternalError):
            await AsyncDaemonClient(sock_path).request("credentials", profile="crash")


async def test_client_refuses_to_send_a_bad_request(tmp_path: Path) -> None:
    with pytest.raises(errors.BadRequest, match="'profile'"):
        DaemonClient(tmp_path / "none.sock").request("credentials", profile="a/b")


async def test_daemon_not_running_absent_or_stale(tmp_path: Path) -> None:
    stale = tmp_path / "stale.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(stale))
    sock.close()
    for path in (tmp_path / "absent.sock", stale):
        with pytest.raises(errors.DaemonNotRunning) as raised:
            DaemonClient(path).request("status")
        assert raised.value.message == NOT_RUNNING_MESSAGE
        with pytest.raises(errors.DaemonNotRunning):
            await AsyncDaemonClient(path).request("status")


async def test_daemon_closing_mid_frame_is_a_protocol_error(tmp_path: Path) -> None:
    """A fake daemon that dies mid-frame: the real server never does that on purpose."""
    path = tmp_path / "half.sock"

    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"\x00\x00\x00\x20{}")
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(half, str(path))
    async with server:
        with pytest.raises(errors.ProtocolError, match="closed the connection"):
            await AsyncDaemonClient(path).request("status")
        with pytest.raises(errors.ProtocolError, match="closed the connection"):
            await asyncio.to_thread(DaemonClient(path, timeout=10).request, "status")


def test_default_socket_path_order_matches_credproc(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # no config file there
    monkeypatch.delenv("VAULTD_CONFIG", raising=False)
    monkeypatch.setenv("VAULTD_SOCKET", "/run/x.sock")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1")
    assert default_socket_path() == Path("/run/x.sock")
    assert credproc.default_socket_path() == "/run/x.sock"
    monkeypatch.delenv("VAULTD_SOCKET")
    assert default_socket_path() == Path("/run/user/1/vaultd/vaultd.sock")
    assert credproc.default_socket_path() == "/run/user/1/vaultd/vaultd.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert default_socket_path() == Path(f"/tmp/vaultd-{os.getuid()}/vaultd.sock")
    assert credproc.default_socket_path() == f"/tmp/vaultd-{os.getuid()}/vaultd.sock"
    config = tmp_path / "vaultd" / "config.toml"
    config.parent.mkdir()
    config.write_text('socket = "/run/c.sock"\n')
    config.chmod(0o600)
    assert default_socket_path() == Path("/run/c.sock")
    assert credproc.default_socket_path() == "/run/c.sock"
    config.chmod(0o666)
    with pytest.raises(errors.ConfigError, match="writable by group or others") as caught:
        default_socket_path()
    assert caught.value.code == "UNSAFE_PERMISSIONS"


def test_peer_credentials_of_a_socketpair() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        assert peer_credentials(left) == PeerCred(os.getpid(), os.getuid(), os.getgid())


def test_describe_own_process() -> None:
    me = describe_process(os.getpid(), uid=4242)
    assert me.uid == 4242
    assert me.executable == os.readlink("/proc/self/exe")
    assert me.cwd == os.getcwd()
    assert me.parent_pid == os.getppid()
    assert describe_process(os.getpid()).uid == os.getuid()


CHILD = """
import subprocess, sys, time
with open("/proc/self/comm", "w") as f:
    f.write("x) y (z 1 2")
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
print(grandchild.pid, flush=True)
time.sleep(30)
"""


def test_describe_child_with_odd_comm_and_control_characters(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen(
        [sys.executable, str(script), "aws", "s3\x1b[2J", "ls"], stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        grandchild_pid = int(child.stdout.readline())
        child_view = describe_process(child.pid)
        grandchild_view = describe_process(grandchild_pid)
    finally:
        child.kill()
        child.wait()
        os.kill(grandchild_pid, 9)
    assert child_view.parent_pid == os.getpid()
    assert grandchild_view.parent_pid == child.pid
    assert grandchild_view.parent_command.endswith("aws s3?[2J ls")
    assert "\x1b" not in grandchild_view.parent_command


def test_describe_missing_process_is_empty_not_an_error() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    view = describe_process(gone.pid, uid=7)
    assert (view.executable, view.cwd, view.parent_pid, view.parent_command) == ("", "", 0, "")
    assert describe_process(0).executable == ""


def test_printable_replaces_controls_and_truncates() -> None:
    assert printable("a\nb\u202ec\x00", 50) == "a?b?c?"
    assert printable("x" * 300, 10) == "x" * 9 + "…"
    assert printable("/home/ü/proj", 50) == "/home/ü/proj"


def test_credproc_imports_only_what_it_may() -> None:
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(credproc.__file__).parent)!r})
        import credproc
        print(" ".join(sorted(sys.modules)))
        """
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script], capture_output=True, check=True, text=True
    )
    modules = set(result.stdout.split())
    assert {"credproc", "_socket"} <= modules
    assert not modules & {"json", "socket", "struct", "re", "threading", "selectors"}
    assert not any(name.startswith("vaultd") for name in modules)
