"""Clients for the daemon's socket: a blocking one for the CLI and an asyncio one for the TUI.

Each request uses its own connection.  Error replies are raised as the matching
:mod:`vaultd.errors` class (``exc.code`` is the daemon's code), and a missing or refusing socket
raises :class:`~vaultd.errors.DaemonNotRunning`.  Before a byte is sent, the daemon is verified
as :mod:`vaultd.credproc` does (docs/threat-model.md T29): the socket's directory is the user's and
not group/other-writable, and the connected peer runs as the user (or as root when allowed);
otherwise :class:`~vaultd.errors.UnsafeSocket`.  ``vaultd credential-process`` does not use
this module: it has its own stdlib-only client in :mod:`vaultd.credproc`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from vaultd import credproc
from vaultd.errors import Busy, DaemonNotRunning, ProtocolError, VaultError
from vaultd.ipc.protocol import (
    HEADER_SIZE,
    Event,
    decode_reply,
    encode_request,
    error_from_reply,
    frame_length,
)

NOT_RUNNING_MESSAGE = (
    "vaultd is not running: start it with `vaultd serve` or `systemctl --user start vaultd.socket`"
)
_NOT_RUNNING_ERRORS = (FileNotFoundError, ConnectionRefusedError, NotADirectoryError)


def default_socket_path() -> Path:
    """Where the daemon listens unless told otherwise, found as :mod:`vaultd.credproc` finds it.

    ``$VAULTD_SOCKET`` if set, else the config file's top-level ``socket``, else
    ``$XDG_RUNTIME_DIR/vaultd/vaultd.sock``, else ``/tmp/vaultd-<uid>/vaultd.sock`` (the server
    creates that directory 0700 and refuses it if another user owns it; clients check it again
    before each use).  An unsafe or unreadable config file raises its ``ConfigError``.
    """
    try:
        return Path(credproc.default_socket_path())
    except credproc.Failure as failure:
        raise _translated(failure) from None


def _translated(failure: credproc.Failure) -> VaultError:
    """The :mod:`vaultd.errors` class for a failure of the shared stdlib checks."""
    if failure.code == DaemonNotRunning.code:
        return DaemonNotRunning(NOT_RUNNING_MESSAGE)
    return error_from_reply({"code": failure.code, "message": failure.message})


def _final(
    reply: dict[str, object] | Event, on_event: Callable[[Event], None] | None
) -> dict[str, object] | None:
    """``reply`` if it is the final reply; an event goes to ``on_event`` and gives None."""
    if not isinstance(reply, Event):
        return reply
    if on_event is not None:
        on_event(reply)
    return None


def _closed_early() -> ProtocolError:
    return ProtocolError("vaultd closed the connection before replying; see the daemon log")


class _VerifiedClient:
    """The socket path, the uids its daemon may run as, and the checks before any byte."""

    def __init__(
        self,
        socket_path: Path | None = None,
        *,
        timeout: float = 70.0,
        allow_root_daemon: bool = False,
        daemon_uids: tuple[int, ...] | None = None,
    ) -> None:
        """``allow_root_daemon`` also trusts a daemon run by root; ``daemon_uids`` replaces
        the trusted uids altogether (a daemon deliberately run as another user)."""
        self.socket_path = socket_path or default_socket_path()
        self.timeout = timeout
        self.daemon_uids = daemon_uids or credproc.daemon_uids(allow_root_daemon)

    def _verify(self, check: Callable[[], None]) -> None:
        try:
            check()
        except credproc.Failure as failure:
            raise _translated(failure) from None

    def _no_reply(self) -> ProtocolError:
        return ProtocolError(f"no reply from vaultd within {self.timeout:g} s; see the daemon log")

    def _check_directory(self) -> None:
        self._verify(lambda: credproc.check_directory(str(self.socket_path), self.daemon_uids))

    def _check_peer(self, sock: socket.socket) -> None:
        path = str(self.socket_path)
        self._verify(lambda: credproc.check_peer(sock, path, self.daemon_uids))


class DaemonClient(_VerifiedClient):
    """Blocking client: one connection per :meth:`request`."""

    def request(
        self, op: str, /, *, on_event: Callable[[Event], None] | None = None, **fields: object
    ) -> dict[str, object]:
        """Send one request and return the success reply's fields (without ``v``/``ok``).

        Events pushed before the reply go to ``on_event``; error replies are raised.
        """
        frame = encode_request(op, **fields)
        self._check_directory()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            self._connect(sock)
            self._check_peer(sock)
            try:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    sock.sendall(frame)  # refused already (BUSY): read the queued frame
                while (reply := _final(decode_reply(self._read_frame(sock)), on_event)) is None:
                    pass
                return reply
            except TimeoutError:
                raise self._no_reply() from None
            except (ConnectionResetError, BrokenPipeError):
                raise _closed_early() from None

    def _connect(self, sock: socket.socket) -> None:
        """Connect; a full listen backlog (EAGAIN) is waited out until the timeout."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                sock.connect(str(self.socket_path))
                return
            except _NOT_RUNNING_ERRORS:
                raise DaemonNotRunning(NOT_RUNNING_MESSAGE) from None
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Busy(
                        f"vaultd did not accept the connection within {self.timeout:g} s"
                    ) from None
                time.sleep(0.05)
            except OSError as exc:
                raise ProtocolError(
                    f"cannot connect to {self.socket_path}: {exc.strerror or exc}"
                ) from None

    @staticmethod
    def _recv_exact(sock: socket.socket, size: int) -> bytes:
        buf = bytearray()
        while len(buf) < size:
            chunk = sock.recv(size - len(buf))
            if not chunk:
                raise _closed_early()
            buf += chunk
        return bytes(buf)

    def _read_frame(self, sock: socket.socket) -> bytes:
        return self._recv_exact(sock, frame_length(self._recv_exact(sock, HEADER_SIZE)))


class AsyncDaemonClient(_VerifiedClient):
    """Asyncio client for the TUI: :meth:`request` plus the :meth:`events` subscription."""

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self._check_directory()
        try:
            reader, writer = await asyncio.open_unix_connection(str(self.socket_path))
        except _NOT_RUNNING_ERRORS:
            raise DaemonNotRunning(NOT_RUNNING_MESSAGE) from None
        try:
            self._check_peer(writer.get_extra_info("socket"))
        except BaseException:
            writer.close()
            raise
        return reader, writer

    @staticmethod
    async def _read_reply(reader: asyncio.StreamReader) -> dict[str, object] | Event | None:
        """The next frame, decoded; None when the daemon closed cleanly between frames."""
        try:
            header = await reader.readexactly(HEADER_SIZE)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise _closed_early() from None
            return None
        try:
            return decode_reply(await reader.readexactly(frame_length(header)))
        except asyncio.IncompleteReadError:
            raise _closed_early() from None

    async def request(
        self, op: str, /, *, on_event: Callable[[Event], None] | None = None, **fields: object
    ) -> dict[str, object]:
        """Send one request and return the success reply's fields; errors are raised."""
        frame = encode_request(op, **fields)
        reader, writer = await self._connect()
        try:
            async with asyncio.timeout(self.timeout):
                writer.write(frame)
                await writer.drain()
                while True:
                    frame_reply = await self._read_reply(reader)
                    if frame_reply is None:
                        raise _closed_early()
                    if (reply := _final(frame_reply, on_event)) is not None:
                        return reply
        except TimeoutError:
            raise self._no_reply() from None
        except ConnectionResetError:
            raise _closed_early() from None
        finally:
            writer.close()

    async def events(self) -> AsyncIterator[Event]:
        """Subscribe to the daemon's events; ends when the daemon ends the subscription.

        An error reply to the subscription is raised.
        """
        reader, writer = await self._connect()
        try:
            writer.write(encode_request("events"))
            await writer.drain()
            while isinstance(reply := await self._read_reply(reader), Event):
                yield reply
        finally:
            writer.close()
