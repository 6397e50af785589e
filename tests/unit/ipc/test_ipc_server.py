"""The asyncio server on real Unix sockets in tmp_path, with the tiny handler from conftest."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vaultd import errors
from vaultd.ipc import peercred
from vaultd.ipc.client import AsyncDaemonClient, DaemonClient
from vaultd.ipc.peercred import PeerCred
from vaultd.ipc.protocol import encode_frame, encode_request
from vaultd.ipc.server import IpcServer, adopt_listen_socket


def _frames(data: bytes) -> list[dict[str, Any]]:
    out = []
    while data:
        length = int.from_bytes(data[:4], "big")
        out.append(json.loads(data[4 : 4 + length]))
        data = data[4 + length :]
    return out


async def test_several_requests_in_sequence_on_one_connection(
    sock_path: Path, recorder: Any, serve: Any, raw: Any
) -> None:
    async with serve(sock_path, recorder):
        data = encode_request("status") + encode_request("approvals")
        replies = _frames(await raw(sock_path, data, shut_write=True))
    assert replies == [
        {"v": 1, "ok": True, "pid": os.getpid(), "uid": os.geteuid()},
        {"v": 1, "ok": True, "op": "approvals"},
    ]


async def test_credentials_fast_path_is_sent_byte_exact_then_closed(
    sock_path: Path, recorder: Any, serve: Any, raw: Any, output: bytes
) -> None:
    async with serve(sock_path, recorder):
        reply = await raw(sock_path, encode_request("credentials", profile="dev"))
    # raw() reads to EOF: the server closed after the one reply.
    assert reply == encode_frame(b'{"v":1,"ok":true,"output":' + output + b"}")
    assert [r.op for r in recorder.requests] == ["credentials"]


async def test_vault_error_reply_keeps_the_connection(
    sock_path: Path, recorder: Any, serve: Any, raw: Any
) -> None:
    async with serve(sock_path, recorder):
        data = encode_request("lock") + encode_request("status")
        replies = _frames(await raw(sock_path, data, shut_write=True))
    assert replies[0]["ok"] is False
    assert replies[0]["error"]["code"] == "UNSAFE_PERMISSIONS"
    assert replies[0]["error"]["path"] == "/x"
    assert replies[1]["ok"] is True


async def test_unexpected_exception_gives_a_generic_internal_error(
    sock_path: Path, recorder: Any, serve: Any, raw: Any
) -> None:
    async with serve(sock_path, recorder):
        reply = await raw(sock_path, encode_request("credentials", profile="crash"))
    [frame] = _frames(reply)
    assert frame["error"]["code"] == "INTERNAL_ERROR"
    assert b"SECRETCANARY" not in reply
    assert b"Traceback" not in reply


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (encode_frame(b"[1]"), "BAD_REQUEST"),
        (encode_frame(b'{"v":1,"op":"status","x":NaN}'), "BAD_REQUEST"),
        (b"\xff\xff\xff\xff", "FRAME_TOO_LARGE"),
        ((100 * 1024 * 1024).to_bytes(4, "big") + b"x" * 1000, "FRAME_TOO_LARGE"),
    ],
    ids=["array", "nan", "2^32-1", "100MB"],
)
async def test_bad_frames_get_one_error_frame_then_close(
    sock_path: Path, recorder: Any, serve: Any, raw: Any, data: bytes, code: str
) -> None:
    async with serve(sock_path, recorder):
        # The oversize header is answered at once: no body was sent, so none was awaited.
        reply = await raw(sock_path, data + encode_request("status"))
    [frame] = _frames(reply)
    assert frame["error"]["code"] == code
    assert recorder.requests == []


async def test_truncated_frame_is_bad_request(
    sock_path: Path, recorder: Any, serve: Any, raw: Any
) -> None:
    async with serve(sock_path, recorder):
        reply = await raw(sock_path, encode_request("status")[:-3], shut_write=True)
    assert _frames(reply)[0]["error"]["code"] == "BAD_REQUEST"


async def test_slow_and_silent_clients_are_closed_while_a_good_client_is_served(
    sock_path: Path, recorder: Any, serve: Any
) -> None:
    async with serve(sock_path, recorder, read_timeout=0.2):
        silent_r, silent_w = await asyncio.open_unix_connection(str(sock_path))
        slow_r, slow_w = await asyncio.open_unix_connection(str(sock_path))
        slow_w.write(encode_request("status")[:2])
        reply = await asyncio.to_thread(DaemonClient(sock_path, timeout=10).request, "status")
        assert reply["uid"] == os.geteuid()
        assert await asyncio.wait_for(silent_r.read(), 10) == b""
        assert await asyncio.wait_for(slow_r.read(), 10) == b""
        silent_w.close()
        slow_w.close()
    assert [r.op for r in recorder.requests] == ["status"]


async def test_a_trickled_frame_is_cut_at_one_deadline_for_the_whole_frame(
    sock_path: Path, recorder: Any, serve: Any
) -> None:
    """Every byte comes well within ``read_timeout`` of the last, the frame as a whole does not."""
    frame = encode_request("status")
    async with serve(sock_path, recorder, read_timeout=0.3):
        reader, writer = await asyncio.open_unix_connection(str(sock_path))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for byte in frame:  # at least len(frame) * 0.05 s in all
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.05)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # closed, we wrote
            assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
    assert len(frame) * 0.05 > 0.3
    assert recorder.requests == []


async def test_whole_request_deadline_answers_request_timeout(
    sock_path: Path, recorder: Any, serve: Any
) -> None:
    async with serve(sock_path, recorder, request_timeout=0.2):
        with pytest.raises(errors.RequestTimeout):
            await AsyncDaemonClient(sock_path, timeout=10).request("credentials", profile="hang")


async def test_connection_cap_refuses_fast_and_recovers(
    sock_path: Path, recorder: Any, serve: Any, raw: Any
) -> None:
    async with serve(sock_path, recorder, max_connections=2) as server:
        held = []
        for _ in range(2):
            reader, writer = await asyncio.open_unix_connection(str(sock_path))
            writer.write(encode_request("status"))
            await reader.readexactly(4)
            held.append((reader, writer))
        assert server.connection_count == 2
        refused = _frames(await raw(sock_path, encode_request("status")))
        assert refused == [
            {
                "v": 1,
                "ok": False,
                "error": {"code": "BUSY", "message": refused[0]["error"]["message"]},
            }
        ]
        held[0][1].close()
        await held[0][1].wait_closed()
        for _ in range(100):
            if server.connection_count < 2:
                break
            await asyncio.sleep(0.01)
        reply = await AsyncDaemonClient(sock_path).request("status")
        assert reply["uid"] == os.geteuid()
        held[1][1].close()


async def test_foreign_uid_from_patched_reader_gets_zero_bytes_and_is_audited(
    sock_path: Path, recorder: Any, serve: Any, raw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The peer reader is patched (a fake uid) so this runs unprivileged; see the priv test."""

    def other_uid(sock: socket.socket) -> PeerCred:
        return PeerCred(pid=4321, uid=4242, gid=4242)

    refused: list[PeerCred] = []
    async with serve(sock_path, recorder, audit=refused.append):
        monkeypatch.setattr(peercred, "peer_credentials", other_uid)
        reply = await raw(sock_path, encode_request("status"))
    assert reply == b""
    assert refused == [PeerCred(pid=4321, uid=4242, gid=4242)]
    assert recorder.requests == []


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A directory other uids can traverse (tmp_path's parents are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="vaultd-priv-", dir="/tmp"))
    try:
        yield path
    finally:
        for child in path.iterdir():
            child.unlink()
        path.rmdir()


@pytest.mark.priv
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another uid")
async def test_real_other_uid_is_refused_before_any_byte(
    world_dir: Path, recorder: Any, serve: Any
) -> None:
    world_dir.chmod(0o700)
    path = world_dir / "vaultd.sock"
    refused: list[PeerCred] = []
    client = textwrap.dedent(
        f"""
        import _socket
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect({str(path)!r})
        data = b""
        try:  # the server may close before the request is even sent: a broken pipe
            s.sendall({encode_request("status")!r})
            while chunk := s.recv(4096):
                data += chunk
        except (BrokenPipeError, ConnectionResetError):
            pass
        print(len(data))
        """
    )
    async with serve(path, recorder, audit=refused.append):
        path.chmod(0o666)
        world_dir.chmod(0o755)
        proc = await asyncio.create_subprocess_exec(
            "setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
            sys.executable, "-I", "-S", "-c", client,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err
    assert out.strip() == b"0"
    assert [p.uid for p in refused] == [65534]
    assert recorder.requests == []


async def test_socket_dir_is_created_0700_and_socket_is_0600(
    sock_path: Path, recorder: Any, serve: Any
) -> None:
    async with serve(sock_path, recorder) as server:
        assert stat.S_IMODE(os.lstat(sock_path.parent).st_mode) == 0o700
        st = os.lstat(sock_path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert server.check_socket_intact()
    assert not sock_path.exists()


async def test_replaced_socket_is_noticed_and_left_alone(
    sock_path: Path, recorder: Any, serve: Any
) -> None:
    async with serve(sock_path, recorder) as server:
        os.unlink(sock_path)
        squatter = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        squatter.bind(str(sock_path))
        assert not server.check_socket_intact()
    assert sock_path.exists()
    squatter.close()


async def test_stale_socket_is_replaced(sock_path: Path, recorder: Any, serve: Any) -> None:
    sock_path.parent.mkdir(mode=0o700)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))
    stale.close()
    async with serve(sock_path, recorder):
        reply = await AsyncDaemonClient(sock_path).request("status")
    assert reply["pid"] == os.getpid()


async def test_live_daemon_is_not_displaced(sock_path: Path, recorder: Any, serve: Any) -> None:
    async with serve(sock_path, recorder):
        with pytest.raises(errors.DaemonAlreadyRunning) as raised:
            async with serve(sock_path, recorder):
                pass
        assert f"another vaultd is running on {sock_path}" in raised.value.message
        assert (await AsyncDaemonClient(sock_path).request("status"))["pid"] == os.getpid()


@pytest.mark.parametrize("kind", ["symlink", "regular file", "directory"])
async def test_non_socket_at_the_path_is_refused(
    sock_path: Path, recorder: Any, serve: Any, kind: str
) -> None:
    sock_path.parent.mkdir(mode=0o700)
    if kind == "symlink":
        sock_path.symlink_to(sock_path.parent / "elsewhere")
    elif kind == "regular file":
        sock_path.write_text("")
    else:
        sock_path.mkdir()
    with pytest.raises(errors.UnsafePermissions) as raised:
        async with serve(sock_path, recorder):
            pass
    assert raised.value.path == str(sock_path)
    assert str(sock_path) in raised.value.message
    assert os.path.lexists(sock_path)


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o701])
async def test_loose_socket_dir_is_refused(
    sock_path: Path, recorder: Any, serve: Any, mode: int
) -> None:
    sock_path.parent.mkdir()
    sock_path.parent.chmod(mode)
    with pytest.raises(errors.UnsafePermissions) as raised:
        async with serve(sock_path, recorder):
            pass
    assert raised.value.path == str(sock_path.parent)
    assert f"chmod 700 {sock_path.parent}" in raised.value.message
    assert not os.path.lexists(sock_path)


async def test_symlinked_socket_dir_is_refused(tmp_path: Path, recorder: Any, serve: Any) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(errors.UnsafePermissions):
        async with serve(tmp_path / "link" / "vaultd.sock", recorder):
            pass


@pytest.mark.priv
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown to another uid")
async def test_foreign_owned_socket_or_dir_is_refused(
    sock_path: Path, recorder: Any, serve: Any
) -> None:
    sock_path.parent.mkdir(mode=0o700)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))
    stale.close()
    os.chown(sock_path, 65534, 65534)
    with pytest.raises(errors.UnsafePermissions, match="owned by uid 65534"):
        async with serve(sock_path, recorder):
            pass
    os.unlink(sock_path)
    os.chown(sock_path.parent, 65534, 65534)
    with pytest.raises(errors.UnsafePermissions, match="owned by uid 65534"):
        async with serve(sock_path, recorder):
            pass


async def test_relative_or_abstract_paths_are_refused(recorder: Any, serve: Any) -> None:
    for path in (Path("vaultd.sock"), Path("/tmp/\0abstract")):
        with pytest.raises(errors.ConfigError):
            async with serve(path, recorder):
                pass


async def test_client_leaving_is_seen_by_the_handler_and_no_reply_is_written(
    sock_path: Path, recorder: Any, serve: Any
) -> None:
    async with serve(sock_path, recorder):
        _reader, writer = await asyncio.open_unix_connection(str(sock_path))
        writer.write(encode_request("credentials", profile="wait"))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()
        for _ in range(200):
            if recorder.closed_seen:
                break
            await asyncio.sleep(0.01)
    assert recorder.closed_seen == [True]


async def test_credentials_client_sending_more_is_dropped(
    sock_path: Path, recorder: Any, serve: Any
) -> None:
    async with serve(sock_path, recorder):
        reader, writer = await asyncio.open_unix_connection(str(sock_path))
        writer.write(encode_request("credentials", profile="wait"))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(encode_request("status"))
        try:
            assert await asyncio.wait_for(reader.read(), 10) == b""
        except ConnectionResetError:
            pass  # closed with our unread bytes in its buffer: also zero bytes
        writer.close()
    assert recorder.closed_seen == [True]
    assert [r.op for r in recorder.requests] == ["credentials"]


async def test_events_reach_a_waiting_client_before_the_reply(
    sock_path: Path, recorder: Any, serve: Any, output: bytes
) -> None:
    seen: list[Any] = []

    def on_event(event: Any) -> None:
        seen.append(event)
        recorder.release.set()

    async with serve(sock_path, recorder):
        client = AsyncDaemonClient(sock_path, timeout=10)
        reply = await client.request("credentials", profile="pending", on_event=on_event)
    assert [e.name for e in seen] == ["approval_pending"]
    assert seen[0].fields["id"] == "ap_1"
    assert reply == {"output": json.loads(output)}


async def test_events_subscription_streams_until_the_handler_ends(
    sock_path: Path, serve: Any
) -> None:
    async def handler(request: Any, conn: Any) -> dict[str, object]:
        for n in range(3):
            await conn.send_event("approval_opened", {"approval": _approval_view(f"ap_{n}")})
        return {}

    async with serve(sock_path, handler, request_timeout=0.01):
        events = [e async for e in AsyncDaemonClient(sock_path).events()]
    assert [(e.name, e.fields["approval"]["id"]) for e in events] == [
        ("approval_opened", "ap_0"),
        ("approval_opened", "ap_1"),
        ("approval_opened", "ap_2"),
    ]


def _approval_view(approval_id: str) -> dict[str, object]:
    requester = {"pid": 1, "uid": 0, "executable": "", "cwd": "", "parent_pid": 0}
    requester |= {"parent_command": "", "parent_executable": ""}
    return {
        "id": approval_id,
        "profile": "dev",
        "action": "credential_process",
        "methods": "code",
        "state": "pending",
        "created_at": "2026-01-01T00:00:00Z",
        "expires_at": "2026-01-01T00:00:50Z",
        "requested_by": requester,
        "joined": [],
        "joined_more": 0,
        "mfa_serial": "arn:aws:iam::123456789012:mfa/alice",
    }


async def test_an_event_off_its_schema_is_never_pushed(
    sock_path: Path, serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """docs/threat-model.md T28 for pushed frames: an undeclared event, or a field its schema lacks,
    is logged and dropped; the stream goes on."""
    sent: list[bool] = []

    async def handler(request: Any, conn: Any) -> dict[str, object]:
        sent.append(await conn.send_event("tick", {"n": 1}))
        view = {**_approval_view("ap_1"), "secret_access_key": "x"}
        sent.append(await conn.send_event("approval_opened", {"approval": view}))
        sent.append(await conn.send_event("approval_opened", {"approval": _approval_view("ap_2")}))
        return {}

    async with serve(sock_path, handler, request_timeout=0.01):
        events = [e async for e in AsyncDaemonClient(sock_path).events()]
    assert sent == [False, False, True]
    assert [e.fields["approval"]["id"] for e in events] == ["ap_2"]
    assert "refused to push the 'tick' event" in caplog.text
    assert "secret_access_key" in caplog.text and '"x"' not in caplog.text


async def test_stop_cancels_running_handlers(sock_path: Path, recorder: Any) -> None:
    server = IpcServer(
        recorder,
        socket_path=sock_path,
        allowed_uids=frozenset({os.geteuid()}),
        audit_peer_refused=lambda peer: None,
    )
    forever = asyncio.create_task(server.serve_forever())
    for _ in range(200):
        if sock_path.exists():
            break
        await asyncio.sleep(0.01)
    reader, writer = await asyncio.open_unix_connection(str(sock_path))
    writer.write(encode_request("credentials", profile="hang"))
    await writer.drain()
    await asyncio.sleep(0.05)
    await server.stop()
    await asyncio.wait_for(forever, 5)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert not sock_path.exists()
    writer.close()


def test_listen_fds_not_for_us_are_ignored() -> None:
    env = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1"}
    assert adopt_listen_socket(env) is None
    assert env == {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1"}


ACTIVATED_SERVER = """
import asyncio, os, sys
from pathlib import Path
from vaultd.ipc.server import IpcServer

async def handler(request, conn):
    return {"listen_fds": os.environ.get("LISTEN_FDS"), "listen_pid": os.environ.get("LISTEN_PID")}

async def main():
    uids = frozenset({os.geteuid()})
    server = IpcServer(handler, socket_path=Path(sys.argv[2]), allowed_uids=uids,
                       audit_peer_refused=print)
    await server.start()
    print("ready", flush=True)
    await asyncio.sleep(30)

os.dup2(int(sys.argv[1]), 3)  # before asyncio.run, whose selector would take fd 3
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = "1"
asyncio.run(main())
"""


async def test_systemd_socket_activation_uses_fd_3(sock_path: Path) -> None:
    sock_path.parent.mkdir(mode=0o700)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_path))
    listener.listen(8)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ACTIVATED_SERVER, str(listener.fileno()), str(sock_path),
        pass_fds=(listener.fileno(),), stdout=subprocess.PIPE,
    )  # fmt: skip
    listener.close()
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 20) == b"ready\n"
        reply = await AsyncDaemonClient(sock_path).request("status")
    finally:
        proc.kill()
        await proc.wait()
    assert reply == {"listen_fds": None, "listen_pid": None}
