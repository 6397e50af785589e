"""Describe the process behind a request from /proc, for approval prompts and the audit log.

Everything here is best effort: a missing process, another uid's process or a system without
/proc give empty strings (and 0 for the parent pid), never an exception.  Text is made safe to
show: control, format and unpaired-surrogate characters become ``?`` and lengths are capped, so
a crafted executable name cannot redraw a prompt.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import socket
import struct
import unicodedata
from collections import OrderedDict
from typing import Final

from vaultd.core.model import Requester

MAX_PATH_CHARS = 512
MAX_COMMAND_CHARS = 200
_READ_SIZE = 4096  # enough for every field shown (command lines are cut at 200 characters)
_SAFE_SEPARATOR = "Zs"  # spaces: not ``isprintable`` but harmless


def printable(text: str, limit: int) -> str:
    """``text`` with unsafe characters replaced by ``?`` and cut to ``limit`` characters.

    Unsafe means Unicode categories Cc, Cf, Cs, Co, Cn, Zl and Zp: exactly what
    :meth:`str.isprintable` refuses except the Zs spaces, so a printable text (the usual
    case) is checked in one C loop and only the rare exception goes character by character.
    """
    cut = text[: limit + 1]
    if not cut.isprintable():
        cut = "".join(
            ch if ch.isprintable() or unicodedata.category(ch) == _SAFE_SEPARATOR else "?"
            for ch in cut
        )
    return cut if len(cut) <= limit else cut[: limit - 1] + "…"


def _read(path: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        return os.read(fd, _READ_SIZE)
    except OSError:
        return b""
    finally:
        os.close(fd)


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def _command(pid: int) -> str:
    return os.fsdecode(b" ".join(a for a in _read(f"/proc/{pid}/cmdline").split(b"\0") if a))


def _stat_field(pid: int, number: int) -> int:
    """Field ``number`` (1-based, as in proc(5)) of /proc/PID/stat as an int; 0 if unreadable.

    "pid (comm) state ppid ...": comm may hold spaces and parentheses, so cut at the last ")"
    (after which field 3 comes first).
    """
    stat = _read(f"/proc/{pid}/stat")
    fields = stat[stat.rfind(b")") + 1 :].split(None, number - 2)
    try:
        return int(fields[number - 3]) if stat and len(fields) > number - 3 else 0
    except ValueError:
        return 0


def _real_uid(pid: int) -> int:
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith(b"Uid:"):
            parts = line.split()
            if len(parts) > 1 and parts[1].isdigit():
                return int(parts[1])
    return -1


def _kernel_thread_name(pid: int) -> str:
    comm = os.fsdecode(_read(f"/proc/{pid}/comm").strip())
    return f"[{comm}]" if comm else ""


_SO_PEERPIDFD: Final = 77
"""getsockopt: a pidfd for the process that connected (Linux 6.5)."""
_PIDFD_GET_INFO: Final = 0xC040FF0B
"""ioctl on a pidfd: its parent pid and credentials without /proc (Linux 6.13)."""
_PIDFD_INFO_PID: Final = 1
_PIDFD_INFO_SIZE: Final = 64


def _pidfd(pid: int, sock: socket.socket | None) -> int:
    """A pidfd for the peer: the connecting process itself when the kernel can say, else for
    ``pid`` now; -1 when it is gone or pidfds are unknown here."""
    if sock is not None:
        with contextlib.suppress(OSError):
            return sock.getsockopt(socket.SOL_SOCKET, _SO_PEERPIDFD)
    try:
        return os.pidfd_open(pid)
    except (OSError, AttributeError):
        return -1


def _parent_from_pidfd(pidfd: int) -> int | None:
    """The parent pid through PIDFD_GET_INFO; None where the kernel has no such ioctl."""
    info = bytearray(_PIDFD_INFO_SIZE)
    struct.pack_into("<Q", info, 0, _PIDFD_INFO_PID)
    try:
        fcntl.ioctl(pidfd, _PIDFD_GET_INFO, info)
    except OSError:
        return None
    parent: int = struct.unpack_from("<I", info, 16 + 8)[0]  # pid, tgid, ppid
    return parent


def _exited(pidfd: int) -> bool:
    """Whether the process behind ``pidfd`` has exited (a pidfd is readable from then on)."""
    poller = select.poll()  # not select(): a daemon with many clients has pidfds over 1024
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(0))


def _parent_facts(parent: int) -> tuple[str, str]:
    """The command line and executable link of ``parent`` (a kernel thread: its name)."""
    return _command(parent) or _kernel_thread_name(parent), _readlink(f"/proc/{parent}/exe")


class ParentCache:
    """Parents' command lines, each read once per parent process: reading another process's
    command line is the dearest /proc read (its memory), and a long-running program (an SDK
    refreshing credentials) spawns its credential_process clients one after another.

    An entry holds a pidfd on the parent and its executable link; it is used only while that
    process lives and still runs that executable (an exec is noticed, docs/threat-model.md
    T33).  The command line is display only (any process sets its own), never a policy key.
    """

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._entries: OrderedDict[int, tuple[int, str, str]] = OrderedDict()

    def facts(self, parent: int) -> tuple[str, str]:
        """``parent``'s command line and executable link."""
        link = _readlink(f"/proc/{parent}/exe")
        known = self._entries.get(parent)
        if known is not None and known[1] == link and not _exited(known[0]):
            self._entries.move_to_end(parent)
            return known[2], link
        if known is not None:
            self._drop(parent)
        pidfd = _pidfd(parent, None) if _PIDFDS else -1
        command = _command(parent)
        link = _readlink(f"/proc/{parent}/exe")
        # Not kept: a parent gone meanwhile, or one caught mid-exec (no command line yet).
        if pidfd >= 0 and (not command or _exited(pidfd)):
            os.close(pidfd)
        elif pidfd >= 0:
            self._entries[parent] = (pidfd, link, command)
            if len(self._entries) > self._size:
                self._drop(next(iter(self._entries)))
        return command or _kernel_thread_name(parent), link

    def __len__(self) -> int:
        return len(self._entries)

    def _drop(self, parent: int) -> None:
        os.close(self._entries.pop(parent)[0])

    def close(self) -> None:
        """Release every pidfd held."""
        while self._entries:
            self._drop(next(iter(self._entries)))


def _describe(
    pid: int, uid: int | None, parent: int, parents: ParentCache | None = None
) -> tuple[Requester, str]:
    """The requester ``pid`` and its executable link (``parent`` < 0: read from /proc)."""
    link = _readlink(f"/proc/{pid}/exe")
    # The command line is read only when the executable link is unreadable: /proc reads of a
    # busy process are slow (they take its memory-map lock), and a request pays for each.
    executable = link or _command(pid).split(" ", 1)[0]
    if parent < 0:
        parent = _stat_field(pid, 4)
    parent_command = parent_executable = ""
    if parent > 0:
        facts = parents.facts if parents is not None else _parent_facts
        parent_command, parent_executable = facts(parent)
    requester = Requester(
        pid=pid,
        uid=_real_uid(pid) if uid is None else uid,
        executable=printable(executable, MAX_PATH_CHARS),
        cwd=printable(_readlink(f"/proc/{pid}/cwd"), MAX_PATH_CHARS),
        parent_pid=parent,
        parent_command=printable(parent_command, MAX_COMMAND_CHARS),
        parent_executable=printable(parent_executable, MAX_PATH_CHARS),
    )
    return requester, link


def _scope(pid: int) -> str:
    """The approval scope of ``pid``: its kernel session, or for a process in no session (or
    unreadable) a scope of its own that no approval reuses."""
    try:
        sid = os.getsid(pid)
    except OSError:
        sid = 0
    return f"session:{sid}" if sid > 0 else f"process:{pid}:{_stat_field(pid, 22)}"


def describe_process(pid: int, uid: int | None = None) -> Requester:
    """A :class:`Requester` for ``pid``; ``uid`` (from the peer credentials) wins over /proc."""
    if pid <= 0:
        return Requester(pid=pid, uid=-1 if uid is None else uid)
    return _describe(pid, uid, -1)[0]


def _pidfds_work() -> bool:
    """Whether this kernel (and its seccomp filter) hands out pidfds (Linux 5.3)."""
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (OSError, AttributeError):
        return False
    return True


_HAS_PROC = os.path.isdir("/proc/self")
_PIDFDS = _HAS_PROC and _pidfds_work()


class PeerProcess:
    """The process behind a connection, described once when it connected (docs/threat-model.md
    T33), and pinned by a pidfd: the facts count only if that very process was still alive
    after they were read, so a pid reused meanwhile never lends its facts.

    ``sock`` (the accepted socket) lets the kernel name the connecting process itself.  Call
    :meth:`close` when the connection ends.
    """

    def __init__(
        self,
        pid: int,
        uid: int | None = None,
        sock: socket.socket | None = None,
        parents: ParentCache | None = None,
    ) -> None:
        self._pid = pid
        self._pidfd = -1
        self._link = ""
        self.scope = f"process:{pid}:0"
        """The requester's approval scope (its login session)."""
        self.pinned = True
        """Whether the facts are the connecting process's (False: it had exited)."""
        if pid <= 0 or not _HAS_PROC:
            self.requester = describe_process(pid, uid)
            return
        if _PIDFDS:
            self._pidfd = _pidfd(pid, sock)
        parent = _parent_from_pidfd(self._pidfd) if self._pidfd >= 0 else None
        self.requester, self._link = _describe(pid, uid, -1 if parent is None else parent, parents)
        self.scope = _scope(pid)
        if self._gone():  # its pid may have been reused: the facts may be another's
            self.requester, self._link = Requester(pid=pid, uid=self.requester.uid), ""
            self.pinned = False

    def unchanged(self) -> bool:
        """Whether the peer is still the process image that connected: it has not exited and
        not exec'd another program.  A peer with no pid (another pid namespace) or a system
        without /proc cannot be told apart, and counts as unchanged."""
        if self._pid <= 0 or not _HAS_PROC:
            return True
        if not self.pinned or self._gone():
            return False
        try:
            link = os.readlink(f"/proc/{self._pid}/exe")
        except PermissionError:
            link = ""  # another uid's process (ipc.allow_root): alive, unreadable
        except OSError:
            return False
        return link == self._link and not self._gone()

    def _gone(self) -> bool:
        if self._pidfd >= 0:
            return _exited(self._pidfd)
        # No pidfd: it was gone already (pidfds work here), or /proc is all there is.
        return _PIDFDS or not os.path.exists(f"/proc/{self._pid}")

    def close(self) -> None:
        """Release the pidfd."""
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1
