"""The card side of vsmartcard's vpcd reader driver, serving an emulated card over TCP.

vpcd (Debian ``vsmartcard-vpcd``, ``libifdvpcd.so``) is a PC/SC reader driver that forwards a
card's traffic over TCP. Framing, both ways: a 2-byte big-endian length, then the payload. A
1-byte payload from vpcd is a control code: ``00`` power off, ``01`` power on, ``02`` reset
(none answered), ``04`` get ATR (answered with the ATR). Anything longer is a command APDU,
answered with the response APDU.

vpcd listens on the port named by reader.conf (``DEVICENAME /dev/null:PORT``, or CHANNELID) and on
PORT+1 for its second slot, on *all* interfaces (``INADDR_ANY``): this module connects to it on
127.0.0.1 only, but cannot narrow vpcd's listener. :func:`free_port_pair` picks a port whose
successor is free too, so parallel runs do not collide. vpcd's other mode (``DEVICENAME
HOST:PORT``, vpcd connecting to the card) is unusable in Debian's vpcd 0.8: once a connection
fails or drops, its presence poll calls ``select`` on fd -1 and glibc aborts pcscd ("bit out of
range 0 - FD_SETSIZE on fd_set").

Latency: Debian's vpcd 0.8 sends the 2-byte length and the APDU in two ``send`` calls. With
Nagle's algorithm on its side and delayed ACKs on ours, every APDU waited ~40 ms (a ykcs11 session
open took 4 s). Setting ``TCP_QUICKACK`` before each read brings a round trip to well under 1 ms.

The ATR is a YubiKey 5's over USB. Its T0 byte ``FD`` makes yubikit treat the connection as USB
(extended APDUs); its historical bytes carry compact-TLV tag 5 "YubiKey", which makes OpenSC's
PIV driver treat the card as a YubiKey (and send GET VERSION).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)

YUBIKEY_ATR = bytes.fromhex("3BFD1300008131FE158073C021C057597562694B657940")

_POWER_OFF, _POWER_ON, _RESET, _GET_ATR = 0, 1, 2, 4

Transmit = Callable[[bytes], bytes]


def _recv_exact(conn: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf.extend(chunk)
    return bytes(buf)


def free_port_pair() -> int:
    """A port P such that P and P+1 were free on all interfaces a moment ago."""
    for _ in range(50):
        with socket.socket() as first, socket.socket() as second:
            first.bind(("", 0))
            port: int = first.getsockname()[1]
            try:
                second.bind(("", port + 1))
            except OSError:
                continue
            return port
    raise OSError("no two consecutive free TCP ports")


class VpcdCardClient:
    """Connects one card to vpcd on 127.0.0.1 from a daemon thread, reconnecting if it drops."""

    def __init__(
        self,
        transmit: Transmit,
        power_cycle: Callable[[], None],
        port: int,
        *,
        atr: bytes = YUBIKEY_ATR,
    ) -> None:
        """``transmit`` answers APDUs; ``power_cycle`` runs on power off and reset."""
        self._transmit = transmit
        self._power_cycle = power_cycle
        self.port = port
        self._atr = atr
        self._stop = threading.Event()
        self._conn: socket.socket | None = None
        self.powered = threading.Event()
        """Set while vpcd has the card powered up (pcscd then lists it as present)."""
        self.apdus = 0
        self._thread = threading.Thread(target=self._run, name="vpcd-card", daemon=True)

    def start(self) -> None:
        """Start connecting and serving."""
        self._thread.start()

    def stop(self) -> None:
        """Disconnect (the card is removed from the reader) and stop."""
        self._stop.set()
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn = socket.create_connection(("127.0.0.1", self.port), timeout=1)
            except OSError:
                self._stop.wait(0.05)
                continue
            conn.settimeout(None)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with conn:
                self._conn = conn
                if self._stop.is_set():
                    return
                try:
                    self._serve(conn)
                except OSError as exc:
                    logger.debug("vpcd connection dropped: %s", exc)
                self._conn = None
            self.powered.clear()
            self._power_cycle()

    def _serve(self, conn: socket.socket) -> None:
        while (head := _recv_exact(conn, 2)) is not None:
            payload = _recv_exact(conn, int.from_bytes(head, "big"))
            if payload is None:
                return
            reply = self._handle(payload)
            if reply is not None:
                conn.sendall(len(reply).to_bytes(2, "big") + reply)

    def _handle(self, payload: bytes) -> bytes | None:
        if len(payload) != 1:
            self.apdus += 1
            return self._transmit(payload)
        code = payload[0]
        if code == _GET_ATR:
            return self._atr
        if code in (_POWER_OFF, _RESET):
            self._power_cycle()
            self.powered.clear()
        if code in (_POWER_ON, _RESET):
            self.powered.set()
        return None
