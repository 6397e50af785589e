"""ISO 7816-4 framing for the emulated smart card: APDUs, BER-TLV, chaining.

Facts relied on (ISO 7816-4 §5.1, §5.3):

- A short APDU is ``CLA INS P1 P2 [Lc data] [Le]`` with one-byte Lc and Le (Le 0 means 256).
  An extended one has a zero byte after P2, then a two-byte Lc (and data) and/or a two-byte Le
  (Le 0 means 65536). yubikit sends extended APDUs to a USB YubiKey (it decides "USB" from the
  ATR's T0 byte ``0xFx``); ykcs11 and OpenSC send short ones.
- Command chaining: CLA bit ``0x10`` says more data follows; each part is answered ``90 00`` and
  the last part (bit clear) runs the command over the concatenated data.
- Response chaining: a short APDU gets at most Le bytes and ``61 xx`` (xx more bytes, 00 for 256
  or more); the host then sends GET RESPONSE (INS ``0xC0``) until ``90 00``. Any other command
  drops what was pending. A card that got no Le answers as if Le were the maximum, as ykpiv
  expects (it sends case-3 APDUs and still reads data back).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

SW_OK = 0x9000
SW_WRONG_LENGTH = 0x6700
SW_SECURITY_STATUS = 0x6982
SW_AUTH_BLOCKED = 0x6983
SW_CONDITIONS = 0x6985
SW_WRONG_DATA = 0x6A80
SW_FILE_NOT_FOUND = 0x6A82
SW_INCORRECT_P1P2 = 0x6A86
SW_REFERENCE_NOT_FOUND = 0x6A88
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00

INS_GET_RESPONSE = 0xC0
_CLA_CHAIN = 0x10


class StatusError(Exception):
    """Ends a command with a status word other than ``90 00``."""

    def __init__(self, sw: int) -> None:
        super().__init__(f"SW {sw:04X}")
        self.sw = sw


@dataclass(frozen=True)
class Command:
    """One parsed command APDU; ``le`` is the maximum when the APDU carried none."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    le: int
    extended: bool


def parse_command(raw: bytes) -> Command:
    """Parse a short or extended command APDU; raise ``StatusError(6700)`` if malformed."""
    if len(raw) < 4:
        raise StatusError(SW_WRONG_LENGTH)
    cla, ins, p1, p2 = raw[:4]
    body = raw[4:]
    if not body:
        return Command(cla, ins, p1, p2, b"", 256, False)
    if len(body) == 1:
        return Command(cla, ins, p1, p2, b"", body[0] or 256, False)
    if body[0] != 0:
        lc = body[0]
        rest = body[1 + lc :]
        if len(body) < 1 + lc or len(rest) > 1:
            raise StatusError(SW_WRONG_LENGTH)
        return Command(cla, ins, p1, p2, body[1 : 1 + lc], (rest[0] or 256) if rest else 256, False)
    if len(body) == 3:
        return Command(cla, ins, p1, p2, b"", int.from_bytes(body[1:3], "big") or 65536, True)
    lc = int.from_bytes(body[1:3], "big")
    rest = body[3 + lc :]
    if lc == 0 or len(body) < 3 + lc or len(rest) not in (0, 2):
        raise StatusError(SW_WRONG_LENGTH)
    le = (int.from_bytes(rest, "big") or 65536) if rest else 65536
    return Command(cla, ins, p1, p2, body[3 : 3 + lc], le, True)


def tlv(tag: int, value: bytes = b"") -> bytes:
    """Encode one BER-TLV with a one- or two-byte tag and a definite length."""
    head = tag.to_bytes(2 if tag > 0xFF else 1, "big")
    n = len(value)
    if n < 0x80:
        size = bytes([n])
    elif n <= 0xFF:
        size = bytes([0x81, n])
    else:
        size = bytes([0x82]) + n.to_bytes(2, "big")
    return head + size + value


def parse_tlvs(data: bytes) -> list[tuple[int, bytes]]:
    """Split concatenated BER-TLVs; raise ``StatusError(6A80)`` on a malformed one."""
    out: list[tuple[int, bytes]] = []
    i = 0
    try:
        while i < len(data):
            tag = data[i]
            i += 1
            if tag & 0x1F == 0x1F:
                tag = tag << 8 | data[i]
                i += 1
            n = data[i]
            i += 1
            if n > 0x80:
                width = n & 0x7F
                if width > 2:
                    raise StatusError(SW_WRONG_DATA)
                n = int.from_bytes(data[i : i + width], "big")
                i += width
            elif n == 0x80:
                raise StatusError(SW_WRONG_DATA)
            if i + n > len(data):
                raise StatusError(SW_WRONG_DATA)
            out.append((tag, data[i : i + n]))
            i += n
    except IndexError as exc:
        raise StatusError(SW_WRONG_DATA) from exc
    return out


def tlv_dict(data: bytes) -> dict[int, bytes]:
    """Parse BER-TLVs into a mapping (the last of a repeated tag wins)."""
    return dict(parse_tlvs(data))


Handler = Callable[[Command], bytes]


class ChainingTransport:
    """Runs a command handler behind ISO command and response chaining.

    The handler gets whole commands (chained data joined) and returns the response data or raises
    :class:`StatusError`. :meth:`transmit` takes and returns raw APDU bytes.
    """

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._chain: tuple[tuple[int, int, int], bytearray] | None = None
        self._pending = b""

    def reset(self) -> None:
        """Forget a half-sent chain and unread response data (power cycle)."""
        self._chain = None
        self._pending = b""

    def transmit(self, raw: bytes) -> bytes:
        """Process one command APDU and return the response APDU (data then SW1 SW2)."""
        try:
            cmd = parse_command(raw)
            if cmd.ins == INS_GET_RESPONSE and self._chain is None:
                return self._next_chunk(cmd.le)
            self._pending = b""
            full = self._join_chain(cmd)
            if full is None:
                return SW_OK.to_bytes(2, "big")
            data = self._handler(full)
        except StatusError as exc:
            self._chain = None
            return exc.sw.to_bytes(2, "big")
        if cmd.extended:
            return data + SW_OK.to_bytes(2, "big")
        self._pending = data
        return self._next_chunk(cmd.le)

    def _join_chain(self, cmd: Command) -> Command | None:
        key = (cmd.ins, cmd.p1, cmd.p2)
        if self._chain is not None and self._chain[0] != key:
            self._chain = None
            raise StatusError(SW_CONDITIONS)
        if cmd.cla & _CLA_CHAIN:
            if self._chain is None:
                self._chain = (key, bytearray())
            self._chain[1].extend(cmd.data)
            return None
        if self._chain is None:
            return cmd
        data = bytes(self._chain[1]) + cmd.data
        self._chain = None
        return Command(cmd.cla, cmd.ins, cmd.p1, cmd.p2, data, cmd.le, cmd.extended)

    def _next_chunk(self, le: int) -> bytes:
        chunk, self._pending = self._pending[:le], self._pending[le:]
        if not self._pending:
            return chunk + SW_OK.to_bytes(2, "big")
        return chunk + bytes([0x61, min(len(self._pending), 256) & 0xFF])
