"""A recording relay for tests: every IPC frame between clients and a real daemon, kept in memory.

:class:`FrameRecorder` listens on its own Unix socket and relays each connection to the
daemon's socket, byte for byte in both directions, splitting each direction into frames by the
4-byte length prefix (docs/threat-model.md T27/T28: the canary scan looks at frames one by one).
Clients are pointed at :attr:`FrameRecorder.path` instead of the daemon's socket.

The daemon sees the relay, not the client, as its peer: peer credentials and requester details
are those of the process running the recorder.  Test use only; nothing is written to disk.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vaultd.ipc.protocol import HEADER_SIZE
from vaultd.system.running import Running

log = logging.getLogger("vaultd.testing")

_CHUNK = 65536


@dataclass
class FrameStream:
    """One direction of one connection: its complete frame bodies and any unframed tail."""

    frames: list[bytes] = field(default_factory=list)
    tail: bytes = b""

    def feed(self, data: bytes) -> None:
        """Add relayed bytes; every frame completed by them is appended to :attr:`frames`."""
        buf = self.tail + data
        while len(buf) >= HEADER_SIZE:
            length = int.from_bytes(buf[:HEADER_SIZE], "big")
            if len(buf) < HEADER_SIZE + length:
                break
            self.frames.append(buf[HEADER_SIZE : HEADER_SIZE + length])
            buf = buf[HEADER_SIZE + length :]
        self.tail = buf


@dataclass
class RecordedConnection:
    """What one relayed connection carried: client to daemon, and daemon to client."""

    sent: FrameStream = field(default_factory=FrameStream)
    received: FrameStream = field(default_factory=FrameStream)


class FrameRecorder(Running):
    """Relay ``path`` to the daemon at ``target`` and record every frame (a context manager)."""

    def __init__(self, path: Path, target: Path) -> None:
        self.path = path
        self.target = target
        self._lock = threading.Lock()
        self._connections: list[RecordedConnection] = []
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._sockets: set[socket.socket] = set()

    @property
    def connections(self) -> list[RecordedConnection]:
        """The connections relayed so far, in the order they were accepted."""
        with self._lock:
            return list(self._connections)

    def frames(self) -> list[bytes]:
        """Every frame body of every connection, both directions, plus any unframed tails."""
        out: list[bytes] = []
        for conn in self.connections:
            for stream in (conn.sent, conn.received):
                out.extend(stream.frames)
                if stream.tail:
                    out.append(stream.tail)
        return out

    def start(self) -> None:
        """Bind the relay socket (mode 0600) and start accepting in a thread."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        self.path.chmod(0o600)
        listener.listen(64)
        self._listener = listener
        self._spawn(self._accept_loop, listener)

    def stop(self) -> None:
        """Close the relay and every relayed connection (after waiting for the relay threads)."""
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in list(self._threads):
            thread.join(10)
        for sock in sockets:
            sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(str(self.target))
            except OSError as exc:
                log.warning("frame recorder: cannot reach %s (%s)", self.target, exc)
                client.close()
                upstream.close()
                continue
            record = RecordedConnection()
            with self._lock:
                self._connections.append(record)
                self._sockets.update((client, upstream))
            self._spawn(self._pump, client, upstream, record.sent)
            self._spawn(self._pump, upstream, client, record.received)

    def _pump(self, source: socket.socket, sink: socket.socket, stream: FrameStream) -> None:
        """Copy ``source`` to ``sink`` until end of stream, recording frames on the way."""
        try:
            while data := source.recv(_CHUNK):
                with self._lock:
                    stream.feed(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
            with contextlib.suppress(OSError):
                source.shutdown(socket.SHUT_RD)
