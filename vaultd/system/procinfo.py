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


def _parent_pid(pid: int) -> int:
    return _stat_field(pid, 4)


def session_scope(pid: int) -> str:
    """The approval scope of ``pid``: its kernel session id (field 6 of /proc/PID/stat), or
    for a process in no session (or unreadable) a scope of its own that no approval reuses."""
    sid = _stat_field(pid, 6)
    return f"session:{sid}" if sid > 0 else f"process:{pid}:{_stat_field(pid, 22)}"


def process_identity(pid: int) -> tuple[int, str]:
    """What tells one process image from another behind ``pid``: its start time (field 22 of
    /proc/PID/stat: a reused pid differs) and its executable link (an exec differs).

    ``(0, "")`` when the process is gone or unreadable.
    """
    return _stat_field(pid, 22), _readlink(f"/proc/{pid}/exe")


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


def describe_process(pid: int, uid: int | None = None) -> Requester:
    """A :class:`Requester` for ``pid``; ``uid`` (from the peer credentials) wins over /proc."""
    if pid <= 0:
        return Requester(pid=pid, uid=-1 if uid is None else uid)
    # The command line is read only when the executable link is unreadable: /proc reads of a
    # busy process are slow (they take its memory-map lock), and a request pays for each.
    executable = _readlink(f"/proc/{pid}/exe") or _command(pid).split(" ", 1)[0]
    parent = _parent_pid(pid)
    parent_command = parent_executable = ""
    if parent > 0:
        parent_command = _command(parent) or _kernel_thread_name(parent)
        parent_executable = _readlink(f"/proc/{parent}/exe")
    return Requester(
        pid=pid,
        uid=_real_uid(pid) if uid is None else uid,
        executable=printable(executable, MAX_PATH_CHARS),
        cwd=printable(_readlink(f"/proc/{pid}/cwd"), MAX_PATH_CHARS),
        parent_pid=parent,
        parent_command=printable(parent_command, MAX_COMMAND_CHARS),
        parent_executable=printable(parent_executable, MAX_PATH_CHARS),
    )
