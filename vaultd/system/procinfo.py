"""Describe the process behind a request from /proc, for approval prompts and the audit log.

Everything here is best effort: a missing process, another uid's process or a system without
/proc give empty strings (and 0 for the parent pid), never an exception.  Text is made safe to
show: control, format and unpaired-surrogate characters become ``?`` and lengths are capped, so
a crafted executable name cannot redraw a prompt.
"""

from __future__ import annotations

import os
import unicodedata

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


def _read(path: str, dir_fd: int | None = None) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return b""
    try:
        return os.read(fd, _READ_SIZE)
    except OSError:
        return b""
    finally:
        os.close(fd)


def _readlink(path: str, dir_fd: int | None = None) -> str:
    try:
        return os.readlink(path, dir_fd=dir_fd)
    except OSError:
        return ""


def _command(pid: int) -> str:
    return os.fsdecode(b" ".join(a for a in _read(f"/proc/{pid}/cmdline").split(b"\0") if a))


def _stat_fields(stat: bytes) -> dict[int, int]:
    """Fields 4 (ppid), 6 (session) and 22 (start time) of a /proc/PID/stat text, 0 if absent.

    "pid (comm) state ppid ...": comm may hold spaces and parentheses, so cut at the last ")"
    (after which field 3 comes first).
    """
    fields = stat[stat.rfind(b")") + 1 :].split(None, 21)
    found: dict[int, int] = {}
    for number in (4, 6, 22):
        try:
            found[number] = int(fields[number - 3]) if stat and len(fields) > number - 3 else 0
        except ValueError:
            found[number] = 0
    return found


def _real_uid(status: bytes) -> int:
    for line in status.splitlines():
        if line.startswith(b"Uid:"):
            parts = line.split()
            if len(parts) > 1 and parts[1].isdigit():
                return int(parts[1])
    return -1


def _kernel_thread_name(pid: int) -> str:
    comm = os.fsdecode(_read(f"/proc/{pid}/comm").strip())
    return f"[{comm}]" if comm else ""


def _open_proc_dir(pid: int) -> int:
    """A descriptor on /proc/PID, or -1 when the process is gone or there is no /proc."""
    try:
        return os.open(f"/proc/{pid}", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return -1


def _describe(pid: int, proc_dir: int, uid: int | None) -> tuple[Requester, str, str]:
    """The requester, its approval scope and its executable link, read through ``proc_dir``."""
    stat = _stat_fields(_read("stat", proc_dir) if proc_dir >= 0 else b"")
    link = _readlink("exe", proc_dir) if proc_dir >= 0 else ""
    # The command line is read only when the executable link is unreadable: /proc reads of a
    # busy process are slow (they take its memory-map lock), and a request pays for each.
    executable = link or _command(pid).split(" ", 1)[0]
    parent = stat[4]
    parent_command = parent_executable = ""
    if parent > 0:
        parent_command = _command(parent) or _kernel_thread_name(parent)
        parent_executable = _readlink(f"/proc/{parent}/exe")
    if uid is None:
        uid = _real_uid(_read("status", proc_dir) if proc_dir >= 0 else b"")
    requester = Requester(
        pid=pid,
        uid=uid,
        executable=printable(executable, MAX_PATH_CHARS),
        cwd=printable(_readlink("cwd", proc_dir) if proc_dir >= 0 else "", MAX_PATH_CHARS),
        parent_pid=parent,
        parent_command=printable(parent_command, MAX_COMMAND_CHARS),
        parent_executable=printable(parent_executable, MAX_PATH_CHARS),
    )
    # A process in no session (or unreadable) gets a scope of its own that no approval reuses.
    sid = stat[6]
    scope = f"session:{sid}" if sid > 0 else f"process:{pid}:{stat[22]}"
    return requester, scope, link


def describe_process(pid: int, uid: int | None = None) -> Requester:
    """A :class:`Requester` for ``pid``; ``uid`` (from the peer credentials) wins over /proc."""
    if pid <= 0:
        return Requester(pid=pid, uid=-1 if uid is None else uid)
    proc_dir = _open_proc_dir(pid)
    try:
        return _describe(pid, proc_dir, uid)[0]
    finally:
        if proc_dir >= 0:
            os.close(proc_dir)


_HAS_PROC = os.path.isdir("/proc/self")


class PeerProcess:
    """The process behind a connection, described once when it connected (docs/threat-model.md
    T33), and pinned: a descriptor on its /proc entry stays bound to that process, so once it
    exits nothing read through the descriptor succeeds, even when its pid is reused.

    Call :meth:`close` when the connection ends.
    """

    def __init__(self, pid: int, uid: int | None = None) -> None:
        self._pid = pid
        self._proc_dir = _open_proc_dir(pid) if pid > 0 else -1
        if pid > 0:
            self.requester, self.scope, self._link = _describe(pid, self._proc_dir, uid)
        else:
            self.requester = describe_process(pid, uid)
            self.scope, self._link = f"process:{pid}:0", ""

    def unchanged(self) -> bool:
        """Whether the peer is still the process image that connected: it has not exited and
        not exec'd another program.  A peer with no pid (another pid namespace) or a system
        without /proc cannot be told apart, and counts as unchanged."""
        if self._pid <= 0 or not _HAS_PROC:
            return True
        if self._proc_dir < 0:
            return False  # gone before it was accepted: its facts were never read
        try:
            return os.readlink("exe", dir_fd=self._proc_dir) == self._link
        except PermissionError:
            return self._link == ""  # another uid's process (ipc.allow_root): alive, unreadable
        except OSError:
            return False

    def close(self) -> None:
        """Release the /proc descriptor."""
        if self._proc_dir >= 0:
            os.close(self._proc_dir)
            self._proc_dir = -1
