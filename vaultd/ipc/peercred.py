"""Who is on the other end of a Unix socket: the kernel's answer, read before any byte.

Linux uses ``SO_PEERCRED``; macOS uses ``LOCAL_PEERCRED`` (the ``getpeereid`` source) and
``LOCAL_PEERPID``.  This is the only platform branch in vaultd.
"""

from __future__ import annotations

import socket
import struct
import sys
from dataclasses import dataclass

_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_XUCRED = struct.Struct("IIh16I")  # struct xucred: version, uid, ngroups, groups[16]
_SOL_LOCAL = 0
_LOCAL_PEERCRED = 0x001
_LOCAL_PEERPID = 0x002


@dataclass(frozen=True, slots=True)
class PeerCred:
    """The peer's process id, user id and primary group id as the kernel reports them."""

    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket) -> PeerCred:
    """Read the peer credentials of a connected Unix stream socket (raises ``OSError``)."""
    if sys.platform == "darwin":
        raw = sock.getsockopt(_SOL_LOCAL, _LOCAL_PEERCRED, _XUCRED.size)
        _version, uid, ngroups, *groups = _XUCRED.unpack(raw)
        pid = int.from_bytes(sock.getsockopt(_SOL_LOCAL, _LOCAL_PEERPID, 4), sys.byteorder)
        return PeerCred(pid=pid, uid=uid, gid=groups[0] if ngroups > 0 else -1)
    if sys.platform.startswith("linux"):
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        pid, uid, gid = _UCRED.unpack(raw)
        return PeerCred(pid=pid, uid=uid, gid=gid)
    raise OSError(f"reading peer credentials is not supported on {sys.platform}")
