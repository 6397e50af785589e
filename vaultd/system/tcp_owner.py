"""Who owns the other end of a loopback TCP connection (Linux: ``/proc/net/tcp{,6}``).

The local HTTP endpoints (the ``vaultd login`` redirect, the ``vaultd exec --server``
container endpoint) serve only the user's own processes (docs/threat-model.md T30): the
connecting socket is the entry whose local address is the peer's and whose remote address is
ours, and the kernel lists its owner's uid.  :func:`parse_table` is pure; :func:`peer_uid`
reads the tables.  Off Linux there are no tables and :func:`peer_uid` says so (``UNKNOWN``).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from dataclasses import dataclass

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Address = tuple[IP, int]
TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
UNKNOWN = -1
"""The uid :func:`peer_uid` reports where the kernel lists no TCP tables (not Linux)."""


@dataclass(frozen=True, slots=True)
class TcpEntry:
    """One row of ``/proc/net/tcp{,6}``: the socket's local and remote address and its uid."""

    local: Address
    remote: Address
    uid: int


def _unmapped(ip: IP) -> IP:
    """An IPv4-mapped IPv6 address (a dual-stack socket talking IPv4) as the IPv4 address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _address(field: str, byteorder: str) -> Address:
    """``0100007F:1F90`` (IPv4) or 32 hex digits (IPv6), each 32-bit word in host order."""
    host, port = field.split(":")
    raw = bytes.fromhex(host)
    if byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return _unmapped(ipaddress.ip_address(raw)), int(port, 16)


def parse_table(text: str, *, byteorder: str = sys.byteorder) -> list[TcpEntry]:
    """The rows of one table (the header line and malformed lines are skipped)."""
    entries = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        try:
            local, remote = _address(fields[1], byteorder), _address(fields[2], byteorder)
            entries.append(TcpEntry(local, remote, int(fields[7])))
        except (IndexError, ValueError):
            continue
    return entries


def _normal(address: tuple[str, int] | tuple[str, int, int, int]) -> Address:
    return _unmapped(ipaddress.ip_address(address[0])), address[1]


def owner_of(entries: list[TcpEntry], local: Address, remote: Address) -> int | None:
    """The uid of the socket bound to ``local`` and connected to ``remote``, if listed."""
    for entry in entries:
        if entry.local == local and entry.remote == remote:
            return entry.uid
    return None


def peer_uid(conn: socket.socket) -> int | None:
    """The uid that owns the client end of ``conn`` (an accepted loopback connection).

    None when the tables do not list it (fail closed); :data:`UNKNOWN` off Linux.
    """
    if not os.path.exists(TABLES[0]):
        return UNKNOWN
    entries: list[TcpEntry] = []
    for table in TABLES:
        try:
            with open(table, encoding="ascii") as f:
                entries += parse_table(f.read())
        except OSError:
            continue
    return owner_of(entries, _normal(conn.getpeername()), _normal(conn.getsockname()))


def is_own_user(conn: socket.socket) -> tuple[bool, int | None]:
    """``(allowed, peer uid)``: allowed when the peer runs as this user (or off Linux)."""
    uid = peer_uid(conn)
    return uid in (os.geteuid(), UNKNOWN), uid


def refusal_warning(uid: int | None, what: str) -> str:
    """The stderr line a command prints when another user's process asked for ``what``."""
    who = f"a process of uid {uid}" if uid is not None else "a process of an unknown user"
    return (
        f"vaultd: WARNING: {who} tried to fetch {what} and was refused (403): another user "
        "on this machine is after your AWS session"
    )
