"""Shared pieces for the IPC tests: a tiny in-test handler and a server on a real socket."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from vaultd.core.model import Requester
from vaultd.errors import RateLimited, UnsafePermissions
from vaultd.ipc.peercred import PeerCred
from vaultd.ipc.protocol import (
    APPROVAL_PENDING,
    CredentialsRequest,
    LockRequest,
    Request,
    StatusRequest,
    approval_pending_fields,
    credentials_reply,
)
from vaultd.ipc.server import Connection, Handler, IpcServer

OUTPUT = (
    b'{"Version":1,"AccessKeyId":"ASIAIOSFODNN7EXAMPLE","SecretAccessKey":"wJalrXUtnFEMI/K7MDENG",'
    b'"SessionToken":"FQoGZXIvYXdzEXAMPLE","Expiration":"2025-05-26T12:34:56Z"}'
)


class Recorder:
    """A tiny handler with scripted behaviour per profile; records what it saw."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.closed_seen: list[bool] = []
        self.approve_codes: asyncio.Queue[str] = asyncio.Queue()
        self.release = asyncio.Event()

    async def __call__(self, request: Request, conn: Connection) -> dict[str, object] | bytes:
        self.requests.append(request)
        if isinstance(request, StatusRequest):
            return {"pid": conn.peer.pid, "uid": conn.peer.uid}
        if isinstance(request, LockRequest):
            raise UnsafePermissions("store /x has mode 0644: run `chmod 600 /x`", path="/x")
        if isinstance(request, CredentialsRequest):
            return await self._credentials(request, conn)
        code = getattr(request, "code", None)
        if code is not None:
            await self.approve_codes.put(code)
            return {}
        return {"op": request.op}

    async def _credentials(self, request: CredentialsRequest, conn: Connection) -> Any:
        match request.profile:
            case "limited":
                raise RateLimited("too many failed codes: wait 30 s", retry_after=30.0)
            case "crash":
                raise RuntimeError("internal detail SECRETCANARY")
            case "wait":
                await conn.closed_event.wait()
                self.closed_seen.append(conn.closed)
                return credentials_reply(OUTPUT)
            case "hang":
                await asyncio.Event().wait()
            case "pending":
                expires = datetime(2025, 5, 26, 12, 34, 56, tzinfo=UTC)
                fields = approval_pending_fields(
                    "ap_1", "pending", Requester(1, 0), expires, "arn:aws:iam::1:mfa/u"
                )
                await conn.send_event(APPROVAL_PENDING, {**fields, "methods": "code"})
                await self.release.wait()
            case "malformed":
                return b'{"v":1,"ok":true,"output":{"Version":10}}'
        return credentials_reply(OUTPUT)


def refuse_nobody(_peer: PeerCred) -> None:
    """Audit callback for tests that never expect a refusal."""
    raise AssertionError("no peer should be refused here")


@asynccontextmanager
async def running(
    path: Path,
    handler: Handler,
    *,
    audit: Callable[[PeerCred], None] = refuse_nobody,
    **options: Any,
) -> AsyncIterator[IpcServer]:
    """An IpcServer for the current uid, started on ``path`` and stopped afterwards."""
    server = IpcServer(
        handler,
        socket_path=path,
        allowed_uids=frozenset({os.geteuid()}),
        audit_peer_refused=audit,
        **options,
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def serve() -> Callable[..., Any]:
    """``async with serve(path, handler, **options) as server``: a started IpcServer."""
    return running


@pytest.fixture
def raw() -> Callable[..., Any]:
    """``await raw(path, data)``: send raw bytes, return all the server wrote back."""
    return raw_exchange


@pytest.fixture
def output() -> bytes:
    """The credential_process JSON the test handler serves."""
    return OUTPUT


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    """A socket path in a not-yet-existing private directory."""
    return tmp_path / "run" / "vaultd.sock"


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


async def raw_exchange(path: Path, data: bytes, *, shut_write: bool = False) -> bytes:
    """Send raw bytes on a fresh connection and return everything the server sends back.

    A reset (the server closed with some of our bytes unread) ends the reply; bytes received
    before it are kept.
    """
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, str(path))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await loop.sock_sendall(sock, data)
            if shut_write:
                sock.shutdown(socket.SHUT_WR)
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := await asyncio.wait_for(loop.sock_recv(sock, 65536), 10):
                received += chunk
        return received


@pytest.fixture(autouse=True)
def no_display(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients start with no display (as here, unlike a desktop): a client without a terminal
    sends its display, which the tests that check it set themselves."""
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
