"""The stdlib credential_process client run as ``python -I -S credproc.py``, on real sockets."""

from __future__ import annotations

import asyncio
import fcntl
import os
import shlex
import subprocess
import sys
import termios
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from vaultd import credproc
from vaultd.commands.setup import client_command
from vaultd.ipc.protocol import CredentialsRequest
from vaultd.testing.harness import read_until

CREDPROC = str(Path(credproc.__file__))
NOT_RUNNING = (
    b"vaultd: DAEMON_NOT_RUNNING: vaultd is not running; start it with `vaultd serve` "
    b"(or `systemctl --user start vaultd.socket`)\n"
)


async def run_credproc(
    *args: str, stdin: int | None = None, tty: bool = False
) -> tuple[int, bytes, bytes]:
    """Run the client in a new session (no controlling terminal unless ``tty``)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-S", CREDPROC, *args,
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        preexec_fn=(lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0)) if tty else None,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out, err


async def test_success_writes_exactly_the_output(
    sock_path: Path, recorder: Any, serve: Any, output: bytes
) -> None:
    async with serve(sock_path, recorder):
        rc, out, err = await run_credproc("--socket", str(sock_path), "--", "-dev.prod_1-x")
    assert (rc, out, err) == (0, output, b"")
    assert recorder.requests == [CredentialsRequest(profile="-dev.prod_1-x", interactive=False)]


async def test_socket_from_environment(
    sock_path: Path, recorder: Any, serve: Any, output: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAULTD_SOCKET", str(sock_path))
    async with serve(sock_path, recorder):
        assert await run_credproc("dev") == (0, output, b"")


async def run_listing_modules(*args: str) -> tuple[int | None, bytes, set[str]]:
    """Run ``credproc.main(args)`` isolated; its exit status, stdout and loaded modules."""
    script = (
        f"import sys; sys.path.insert(0, {str(Path(CREDPROC).parent)!r}); import credproc\n"
        f"rc = credproc.main({list(args)!r})\n"
        "sys.stderr.write(' '.join(sorted(sys.modules))); sys.exit(rc)\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-S", "-c", script, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await proc.communicate()
    return proc.returncode, out, set(err.decode().split())


async def test_fast_path_loads_no_json(
    sock_path: Path, recorder: Any, serve: Any, output: bytes
) -> None:
    async with serve(sock_path, recorder):
        rc, out, modules = await run_listing_modules(f"--socket={sock_path}", "dev")
    assert (rc, out) == (0, output)
    assert "credproc" in modules
    assert not modules & {"json", "socket", "struct", "threading"}
    assert not any(m.startswith("vaultd") for m in modules)


@pytest.mark.parametrize(
    ("profile", "line"),
    [
        ("limited", b"vaultd: RATE_LIMITED: too many failed codes: wait 30 s\n"),
        ("crash", b"vaultd: INTERNAL_ERROR: vaultd failed to handle the request; see its log\n"),
        ("malformed", b"vaultd: PROTOCOL_ERROR: vaultd sent a malformed credentials reply\n"),
    ],
)
async def test_error_reply_gives_one_stderr_line_and_empty_stdout(
    sock_path: Path, recorder: Any, serve: Any, profile: str, line: bytes
) -> None:
    async with serve(sock_path, recorder):
        assert await run_credproc("--socket", str(sock_path), profile) == (1, b"", line)


async def test_daemon_absent(tmp_path: Path) -> None:
    assert await run_credproc("--socket", str(tmp_path / "none.sock"), "dev") == (
        1,
        b"",
        NOT_RUNNING,
    )


RawServer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _raw_server(reply: bytes) -> RawServer:
    """A fake daemon that answers with fixed bytes: the real server never sends broken frames."""

    async def serve_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)
        writer.write(reply)
        await writer.drain()
        writer.close()

    return serve_once


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (b"\x00\x00\x01\x00" + b'{"v":1,"ok":true,"output":{"Version":1,"Acc', b"PROTOCOL_ERROR"),
        (b"\x00\x00", b"PROTOCOL_ERROR"),
        (b"", b"PROTOCOL_ERROR"),
        (b"\xff\xff\xff\xff" + b"{" * 100, b"FRAME_TOO_LARGE"),
        (b"\x00\x00\x00\x03[1]", b"PROTOCOL_ERROR"),
        (b'\x00\x00\x00\x1c{"v":1,"ok":true,"output":{}}', b"PROTOCOL_ERROR"),
    ],
    ids=["mid-frame", "short header", "no reply", "oversize", "array", "not version 1"],
)
async def test_broken_replies_leave_stdout_empty(tmp_path: Path, reply: bytes, code: bytes) -> None:
    """Against a fake daemon (``_raw_server``), since only a fake can send these bytes."""
    path = tmp_path / "raw.sock"
    server = await asyncio.start_unix_server(_raw_server(reply), str(path))
    async with server:
        rc, out, err = await run_credproc("--socket", str(path), "dev")
    assert (rc, out) == (1, b"")
    assert err.startswith(b"vaultd: " + code + b": ")
    assert err.count(b"\n") == 1


@pytest.mark.parametrize(
    "args",
    [[], ["../x"], ["a b"], ["x" * 65], ["--socket"], ["a", "b"], ["--socket=", "a"], ["-x"]],
)
async def test_usage_errors_exit_2(args: list[str]) -> None:
    rc, out, err = await run_credproc(*args)
    assert (rc, out) == (2, b"")
    assert err.startswith(b"usage: ")


async def test_pending_approval_without_a_terminal_just_waits(
    sock_path: Path, recorder: Any, serve: Any, output: bytes
) -> None:
    async with serve(sock_path, recorder):
        task = asyncio.create_task(run_credproc("--socket", str(sock_path), "pending"))
        for _ in range(500):
            if recorder.requests:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert not task.done()
        recorder.release.set()
        assert await task == (0, output, b"")
    assert [r.op for r in recorder.requests] == ["credentials"]


async def test_pending_approval_prompts_on_the_terminal_and_sends_the_code(
    sock_path: Path, recorder: Any, serve: Any, output: bytes
) -> None:
    primary, secondary = os.openpty()
    try:
        async with serve(sock_path, recorder):
            task = asyncio.create_task(
                run_credproc("--socket", str(sock_path), "pending", stdin=secondary, tty=True)
            )
            shown = await asyncio.wait_for(asyncio.to_thread(read_until, primary, b"code"), 20)
            os.write(primary, b"12345\n")
            await asyncio.wait_for(asyncio.to_thread(read_until, primary, b"6 digits"), 20)
            os.write(primary, b" 123456 \n")
            code = await asyncio.wait_for(recorder.approve_codes.get(), 20)
            recorder.release.set()
            rc, out, err = await task
    finally:
        os.close(primary)
        os.close(secondary)
    assert (rc, out, err) == (0, output, b"")
    assert code == "123456"
    assert b"profile pending" in shown
    assert b"approval ap_1" in shown
    assert recorder.requests[0] == CredentialsRequest(profile="pending", interactive=True)


async def test_the_command_setup_writes_gets_the_credentials(
    sock_path: Path, recorder: Any, serve: Any, output: bytes
) -> None:
    """`vaultd setup aws-profile` imports the client (cached bytecode), isolated and site-less."""
    argv = shlex.split(client_command("-dev", str(sock_path)))
    assert argv[:4] == [sys.executable, "-I", "-S", "-c"]
    async with serve(sock_path, recorder):
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert (proc.returncode, out, err) == (0, output, b"")
    assert recorder.requests == [CredentialsRequest(profile="-dev", interactive=False)]


@pytest.mark.parametrize(
    ("display", "wayland", "sent"),
    [
        (":3", "wayland-1", {"display": ":3", "wayland_display": "wayland-1"}),
        ("localhost:10.0", None, {"display": "localhost:10.0"}),
        (
            ':0","interactive":true',
            "/run/user/1000/wayland-0",
            {"wayland_display": "/run/user/1000/wayland-0"},
        ),  # a value the daemon would refuse is not sent
    ],
)
async def test_a_client_without_a_terminal_sends_its_display(
    sock_path: Path,
    recorder: Any,
    serve: Any,
    output: bytes,
    monkeypatch: pytest.MonkeyPatch,
    display: str,
    wayland: str | None,
    sent: dict[str, str],
) -> None:
    monkeypatch.setenv("DISPLAY", display)
    if wayland is not None:
        monkeypatch.setenv("WAYLAND_DISPLAY", wayland)
    async with serve(sock_path, recorder):
        assert await run_credproc("--socket", str(sock_path), "dev") == (0, output, b"")
    assert recorder.requests == [CredentialsRequest(profile="dev", interactive=False, **sent)]
