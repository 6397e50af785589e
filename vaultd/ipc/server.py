"""The asyncio Unix-socket server: a hardened transport that a request handler plugs into.

Start-up keeps the socket private: the directory must be ours and 0700 (created so if missing),
the socket is bound under ``umask(0o177)`` (mode 0600), an existing path is probed (a live
daemon or a foreign, symlinked or non-socket path refuses the start; a stale socket is
replaced), and the abstract namespace is never used.  Under systemd socket activation
(``LISTEN_PID``/``LISTEN_FDS``) the inherited fd 3 is used instead; the unit's
``DirectoryMode=0700`` and ``SocketMode=0600`` then keep it private.

Each accepted connection has its peer credentials read before any byte; a uid outside
``allowed_uids`` is audited and closed with nothing written.  Above ``max_connections`` a
connection gets one ``BUSY`` frame and is closed.  A client waiting to send a request is closed
after ``read_timeout``; once a frame's first byte is in, the whole frame must arrive within
``read_timeout`` of it (one deadline per frame, however the bytes trickle in: no slowloris),
and the request as a whole (read, handling, reply) has ``request_timeout``; ``events``
subscriptions are exempt from the latter.  Bytes already waiting are read and replies sent
without a suspension or a timer; a timer is armed only when the socket would block.
Malformed or oversize frames get an error frame, then the connection is closed.  A connection
may carry several requests in sequence, except that a ``credentials`` or ``events`` request is
the last one on its connection.

The handler is ``async def handler(request, conn) -> Mapping | bytes``: a mapping becomes a
success reply, bytes (from :func:`~vaultd.ipc.protocol.credentials_reply`) are sent unchanged
as the reply body, a :class:`~vaultd.errors.VaultError` becomes an error reply, and anything
else is logged and answered with ``INTERNAL_ERROR``.  A handler learns that its client went
away from :attr:`Connection.closed` / :attr:`Connection.closed_event`; it is not cancelled, and
its reply is then dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import math
import os
import socket
import stat
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from pathlib import Path

from vaultd.core.model import Requester
from vaultd.errors import (
    BadRequest,
    Busy,
    ConfigError,
    DaemonAlreadyRunning,
    InternalError,
    PeerRefused,
    ReplySchemaViolation,
    RequestTimeout,
    UnsafePermissions,
    VaultError,
)
from vaultd.ipc import peercred
from vaultd.ipc.peercred import PeerCred
from vaultd.ipc.protocol import (
    HEADER_SIZE,
    CredentialsRequest,
    EventsRequest,
    ExecRequest,
    Request,
    decode_request,
    encode_frame,
    error_reply,
    event_frame,
    frame_length,
    success_reply,
)
from vaultd.ipc.replies import check_event
from vaultd.system.procinfo import ParentCache, PeerProcess

log = logging.getLogger("vaultd.ipc")

Handler = Callable[[Request, "Connection"], Awaitable[Mapping[str, object] | bytes]]

_SD_LISTEN_FDS_START = 3
_MAX_UNIX_PATH = 107
_ACCEPT_BACKOFF = 0.1
_ACCEPT_BATCH = 64
_WATCH_DELAY = 0.2
_TICK = 0.05  # a client leaving mid-request is noticed 0.25 s late at most; a deadline 0.05 s
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


_CHANGED = PeerRefused(
    "the requesting process exec'd or exited after it connected, so it is not the process "
    "that connected: refused; connect from the program that makes the request"
)


class _PeerGone(Exception):
    """The client closed its end."""


class Connection:
    """One accepted client as a handler sees it."""

    def __init__(
        self, sock: socket.socket, peer: PeerCred, write_timeout: float, parents: ParentCache
    ) -> None:
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._write_timeout = write_timeout
        self._write_lock = asyncio.Lock()
        # Who connected, read now (docs/threat-model.md T33): a process that execs into
        # another program after connecting is judged by what it connected as, or refused.
        self._process = PeerProcess(peer.pid, uid=peer.uid, sock=sock, parents=parents)
        self.scope = self._process.scope
        """The requester's approval scope (its login session), read when it connected."""
        self.fresh = True
        """True until the server first waits on this connection: a request read and
        dispatched before then was sent by the process just described, so checking it again
        (:meth:`same_process`, a /proc read) would only repeat the same instant."""
        self._watching = False
        self.peer = peer
        self.closed_event = asyncio.Event()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop serving the connection."""
        return self._loop

    @property
    def socket(self) -> socket.socket:
        """The accepted socket."""
        return self._sock

    @property
    def closed(self) -> bool:
        """True once the client has gone away (or broke the protocol while waiting)."""
        return self.closed_event.is_set()

    @property
    def requester(self) -> Requester:
        """The requesting process, as described from /proc when it connected."""
        return self._process.requester

    @property
    def pinned(self) -> bool:
        """Whether the facts read at accept are the connecting process's (it had not exited)."""
        return self._process.pinned

    def same_process(self) -> bool:
        """Whether the peer is still the process image that connected (no exec, no exit)."""
        return self._process.unchanged()

    async def send_event(self, name: str, fields: Mapping[str, object] | None = None) -> bool:
        """Push an event frame; False (and nothing written) once the client is gone, or when
        the event does not match its declared schema (logged; docs/threat-model.md T28)."""
        try:
            check_event(name, fields or {})
        except ReplySchemaViolation as exc:
            log.error("refused to push the %r event: %s", name, exc)
            return False
        return await self.send_body(event_frame(name, fields))

    async def send_body(self, body: bytes) -> bool:
        """Write one frame around ``body``; False if the client is gone or too slow."""
        frame = encode_frame(body)
        async with self._write_lock:
            if self.closed:
                return False
            try:
                sent = _send_now(self._sock, frame)
                if sent < len(frame):
                    async with asyncio.timeout(self._write_timeout):
                        rest = memoryview(frame)[sent:]
                        await self._loop.sock_sendall(self._sock, rest)
            except (OSError, TimeoutError):
                self.mark_closed()
                return False
        return True

    def mark_closed(self) -> None:
        """Record that the client is gone."""
        self.unwatch()
        self.closed_event.set()

    def release(self) -> None:
        """Mark the connection closed and let go of the peer's /proc descriptor."""
        self.mark_closed()
        self._process.close()

    def watch(self, *, exclusive: bool) -> None:
        """Notice the client leaving while a handler runs; with ``exclusive``, any byte too.

        Called by the server's in-flight ticker once a handler has run :data:`_WATCH_DELAY`:
        a handler done sooner (a cache hit) costs no selector registration at all.
        """
        self._loop.add_reader(self._sock.fileno(), self._readable, exclusive)
        self._watching = True

    def _readable(self, exclusive: bool) -> None:
        try:
            data = self._sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data and not exclusive:
            self.unwatch()
            return
        if data:
            log.warning("client pid %d sent data while waiting; dropping it", self.peer.pid)
        self.mark_closed()

    def unwatch(self) -> None:
        """Stop watching the socket (before it is read again)."""
        if self._watching:
            self._watching = False
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(self._sock.fileno())


class _Running:
    """One handler in flight: when its socket is to be watched, and its deadline."""

    __slots__ = ("conn", "deadline", "exclusive", "expired", "task", "watch_at")

    def __init__(
        self, conn: Connection, watch_at: float, deadline: float | None, exclusive: bool
    ) -> None:
        self.conn = conn
        self.task = asyncio.current_task()
        self.watch_at = watch_at
        self.deadline = deadline
        self.exclusive = exclusive
        self.expired = False


class _InFlight:
    """The handlers running, looked after by one ticker rather than two timers a request.

    A cancelled asyncio timer stays in the loop's heap until it comes due or the heap is
    rebuilt, so a deadline and a watch timer per request (60 s and 0.25 s) keep the heap as
    long as a minute of requests: at thousands a second that cost more than a cache hit.
    The ticker runs only while a handler does, every :data:`_TICK` seconds: it starts
    watching a handler's socket after :data:`_WATCH_DELAY`, and cancels one past its deadline.
    """

    def __init__(self) -> None:
        self._running: dict[Connection, _Running] = {}
        self._ticker: asyncio.TimerHandle | None = None

    def add(self, conn: Connection, deadline: float | None, *, exclusive: bool) -> _Running:
        """Register ``conn``'s handler (the current task) until :meth:`discard`."""
        loop = conn.loop
        running = _Running(conn, loop.time() + _WATCH_DELAY, deadline, exclusive)
        self._running[conn] = running
        if self._ticker is None:
            self._ticker = loop.call_later(_TICK, self._tick, loop)
        return running

    def discard(self, conn: Connection) -> None:
        """``conn``'s handler is done."""
        self._running.pop(conn, None)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for running in list(self._running.values()):
            if now >= running.watch_at and not running.conn.closed:
                running.watch_at = math.inf
                running.conn.watch(exclusive=running.exclusive)
            if running.deadline is not None and now >= running.deadline and not running.expired:
                running.expired = True
                if running.task is not None:
                    running.task.cancel()
        self._ticker = loop.call_later(_TICK, self._tick, loop) if self._running else None

    def close(self) -> None:
        """Stop the ticker."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None


def _send_now(sock: socket.socket, data: bytes) -> int:
    """Send what the socket takes without waiting; the count sent (0 if it would block)."""
    try:
        return sock.send(data)
    except (BlockingIOError, InterruptedError):
        return 0


def _recv_now(sock: socket.socket, size: int) -> bytes | None:
    """Up to ``size`` bytes already waiting (b"" at end of stream), or None if none are."""
    try:
        return sock.recv(size)
    except (BlockingIOError, InterruptedError):
        return None


def adopt_listen_socket(environ: MutableMapping[str, str] | None = None) -> socket.socket | None:
    """The systemd-activated listening socket (fd 3) if this process was given one.

    The activation variables are removed from ``environ`` (``os.environ`` by default) so that
    children do not inherit them.
    """
    env = os.environ if environ is None else environ
    if env.get("LISTEN_PID") != str(os.getpid()):
        return None
    try:
        count = int(env.get("LISTEN_FDS", "0"))
    except ValueError:
        count = 0
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(name, None)
    if count < 1:
        return None
    sock = socket.socket(fileno=_SD_LISTEN_FDS_START)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise ConfigError("the socket passed by systemd (fd 3) is not a Unix stream socket")
    os.set_inheritable(sock.fileno(), False)
    return sock


def _check_directory(directory: Path) -> None:
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        try:
            os.mkdir(directory, 0o700)
        except FileNotFoundError:
            raise ConfigError(
                f"cannot create the socket directory {directory}: its parent does not exist"
            ) from None
        os.chmod(directory, 0o700)
        st = os.lstat(directory)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise UnsafePermissions(
            f"socket directory {directory} is a symlink or not a directory: "
            f"remove it and let vaultd create it",
            path=str(directory),
        )
    if st.st_uid != os.geteuid():
        raise UnsafePermissions(
            f"socket directory {directory} is owned by uid {st.st_uid}, not by you "
            f"(uid {os.geteuid()}): choose a directory you own",
            path=str(directory),
        )
    if st.st_mode & 0o077:
        raise UnsafePermissions(
            f"socket directory {directory} has mode {stat.S_IMODE(st.st_mode):04o}: "
            f"run `chmod 700 {directory}`",
            path=str(directory),
        )


def _clear_stale(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISSOCK(st.st_mode):
        raise UnsafePermissions(
            f"socket path {path} exists and is not a socket (a symlink or a file): "
            f"move it away if you did not put it there",
            path=str(path),
        )
    if st.st_uid != os.geteuid():
        raise UnsafePermissions(
            f"socket path {path} is owned by uid {st.st_uid}, not by you: remove it",
            path=str(path),
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        os.unlink(path)
        log.info("removed stale socket %s", path)
        return
    except OSError as exc:
        raise ConfigError(
            f"cannot probe the existing socket {path} ({exc.strerror or exc}): "
            f"remove it if no vaultd is running"
        ) from None
    finally:
        probe.close()
    raise DaemonAlreadyRunning(
        f"another vaultd is running on {path}: stop it first, or use another socket path"
    )


def _bind(path: Path, backlog: int) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot bind the socket {path}: {exc.strerror or exc}") from None
    finally:
        os.umask(old_umask)
    sock.listen(backlog)
    return sock


class IpcServer:
    """The daemon's Unix-socket listener; see the module docstring for the guarantees."""

    def __init__(
        self,
        handler: Handler,
        *,
        socket_path: Path,
        allowed_uids: frozenset[int],
        audit_peer_refused: Callable[[PeerCred], None],
        max_connections: int = 256,
        read_timeout: float = 5.0,
        request_timeout: float = 60.0,
    ) -> None:
        self._handler = handler
        self._path = socket_path
        self._allowed_uids = allowed_uids
        self._audit_peer_refused = audit_peer_refused
        self._max_connections = max_connections
        self._read_timeout = read_timeout
        self._request_timeout = request_timeout
        self._listener: socket.socket | None = None
        self._identity: tuple[int, int] | None = None
        self._owns_path = False
        self._accept_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = asyncio.Event()
        self._parents = ParentCache()
        self._in_flight = _InFlight()

    @property
    def socket_path(self) -> Path:
        """Where the server listens."""
        return self._path

    @property
    def connection_count(self) -> int:
        """Connections currently admitted."""
        return len(self._tasks)

    async def start(self) -> None:
        """Check the directory, take the socket (inherited or bound) and start accepting."""
        path = self._path
        if not path.is_absolute() or "\0" in str(path):
            raise ConfigError(f"socket path {path!r} must be an absolute filesystem path")
        if len(os.fsencode(path)) > _MAX_UNIX_PATH:
            raise ConfigError(f"socket path {path} is longer than {_MAX_UNIX_PATH} bytes")
        listener = adopt_listen_socket()
        if listener is None:
            _check_directory(path.parent)
            _clear_stale(path)
            # Half the connection cap: a backlog that fills while the daemon is stalled can
            # then be accepted at once without pushing the waiting clients over the cap.
            backlog = min(max(self._max_connections // 2, 16), socket.SOMAXCONN)
            listener = _bind(path, backlog)
            self._owns_path = True
        listener.setblocking(False)
        self._listener = listener
        with contextlib.suppress(OSError):
            st = os.lstat(path)
            self._identity = (st.st_dev, st.st_ino)
        self._stopped.clear()
        self._accept_task = asyncio.create_task(self._accept_loop(listener))
        log.info("listening on %s", path)

    async def serve_forever(self) -> None:
        """Start if needed and run until :meth:`stop`."""
        if self._listener is None:
            await self.start()
        await self._stopped.wait()

    async def stop(self) -> None:
        """Stop accepting, cancel handlers and remove the socket file this server created."""
        if self._accept_task is not None:
            self._accept_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accept_task
            self._accept_task = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._owns_path and self.check_socket_intact():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)
        self._owns_path = False
        self._parents.close()
        self._in_flight.close()
        self._stopped.set()

    def check_socket_intact(self) -> bool:
        """True while the socket file is still ours: same inode, our uid, mode 0600 or less."""
        if self._identity is None:
            return False
        try:
            st = os.lstat(self._path)
        except OSError:
            return False
        return (
            stat.S_ISSOCK(st.st_mode)
            and (st.st_dev, st.st_ino) == self._identity
            and st.st_uid == os.geteuid()
            and not st.st_mode & 0o077
        )

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = await loop.sock_accept(listener)
            except OSError as exc:
                if exc.errno == errno.ECONNABORTED:
                    continue
                if exc.errno not in _RESOURCE_ERRNOS:
                    log.error("accepting connections failed (%s); the server stops", exc)
                    self._stopped.set()
                    return
                log.warning("accept failed (%s); backing off", exc.strerror)
                await asyncio.sleep(_ACCEPT_BACKOFF)
                continue
            self._admit(sock)
            self._admit_queued(listener)

    def _admit_queued(self, listener: socket.socket) -> None:
        """Admit up to :data:`_ACCEPT_BATCH` connections already queued, in this loop turn.

        Under a burst this keeps the listen backlog short; an error is left to the awaited
        accept, which handles it (and backs off).
        """
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, _ = listener.accept()
            except OSError:  # nothing queued (EAGAIN), or an error the next accept meets
                return
            sock.setblocking(False)
            self._admit(sock)

    def _admit(self, sock: socket.socket) -> None:
        try:
            peer = peercred.peer_credentials(sock)
        except OSError as exc:
            log.warning("cannot read peer credentials (%s); closing", exc)
            sock.close()
            return
        if peer.uid not in self._allowed_uids:
            sock.close()
            log.warning("refused a peer with uid %d (pid %d)", peer.uid, peer.pid)
            try:
                self._audit_peer_refused(peer)
            except Exception:
                log.exception("auditing a refused peer failed")
            return
        if len(self._tasks) >= self._max_connections:
            with contextlib.suppress(OSError):
                sock.send(encode_frame(error_reply(Busy("vaultd is busy: try again shortly"))))
            sock.close()
            return
        task = asyncio.create_task(self._serve(sock, peer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, sock: socket.socket, peer: PeerCred) -> None:
        conn = Connection(sock, peer, self._read_timeout, self._parents)
        try:
            while await self._serve_one(sock, conn):
                pass
        except (TimeoutError, OSError):
            pass
        except Exception:
            log.exception("connection from pid %d failed", peer.pid)
        finally:
            conn.release()
            sock.close()
            # Leave the count now, not from a done callback a loop turn later: under load
            # finished tasks would otherwise hold places and new clients would get BUSY.
            task = asyncio.current_task()
            if task is not None:
                self._tasks.discard(task)

    async def _recv_exact(self, conn: Connection, size: int, deadline: float) -> bytes:
        """``size`` bytes: read at once when already there, else awaited until ``deadline``."""
        data = b""
        sock = conn.socket
        while len(data) < size:
            chunk = _recv_now(sock, size - len(data))
            if chunk is None:
                conn.fresh = False
                async with asyncio.timeout_at(deadline):
                    chunk = await conn.loop.sock_recv(sock, size - len(data))
            if not chunk:
                raise _PeerGone("closed mid-frame")
            data += chunk
        return data

    async def _serve_one(self, sock: socket.socket, conn: Connection) -> bool:
        """Read, handle and answer one request; False when the connection should end."""
        loop = conn.loop
        header = _recv_now(sock, HEADER_SIZE)
        if header is None:  # idle: the client has read_timeout to start its request
            conn.fresh = False
            async with asyncio.timeout(self._read_timeout):
                header = await loop.sock_recv(sock, HEADER_SIZE)
        if not header:
            return False
        now = loop.time()
        deadline = now + self._request_timeout
        frame_deadline = min(now + self._read_timeout, deadline)
        try:
            if len(header) < HEADER_SIZE:
                header += await self._recv_exact(conn, HEADER_SIZE - len(header), frame_deadline)
            body = await self._recv_exact(conn, frame_length(header), frame_deadline)
            request = decode_request(body)
        except _PeerGone:
            await conn.send_body(
                error_reply(BadRequest("truncated frame: the client closed early"))
            )
            return False
        except VaultError as exc:
            await conn.send_body(error_reply(exc))
            return False
        return await self._dispatch(request, conn, deadline)

    async def _dispatch(self, request: Request, conn: Connection, deadline: float) -> bool:
        final = isinstance(request, CredentialsRequest | ExecRequest | EventsRequest)
        if not (conn.fresh and conn.pinned) and not conn.same_process():
            await conn.send_body(error_reply(_CHANGED))
            return False
        conn.fresh = False
        body = await self._run_handler(
            request, conn, None if isinstance(request, EventsRequest) else deadline, final
        )
        if conn.closed:
            return False
        return await conn.send_body(body) and not final

    async def _run_handler(
        self, request: Request, conn: Connection, deadline: float | None, final: bool
    ) -> bytes:
        running = self._in_flight.add(conn, deadline, exclusive=final)
        try:
            result = await self._handler(request, conn)
            return result if isinstance(result, bytes) else success_reply(result)
        except VaultError as exc:
            return error_reply(exc)
        except asyncio.CancelledError:
            if not running.expired or running.task is None or running.task.uncancel() > 0:
                raise  # not the deadline: the server is stopping
            return error_reply(
                RequestTimeout(f"the {request.op!r} request was not answered in time; retry")
            )
        except Exception:
            log.exception("handling a %r request failed", request.op)
            return error_reply(InternalError("vaultd failed to handle the request; see its log"))
        finally:
            self._in_flight.discard(conn)
            conn.unwatch()
