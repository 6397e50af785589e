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
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def printable(text: str, limit: int) -> str:
    """``text`` with unsafe characters replaced by ``?`` and cut to ``limit`` characters."""
    cleaned = "".join(
        "?" if unicodedata.category(ch) in _UNSAFE_CATEGORIES else ch for ch in text[: limit + 1]
    )
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(64 * 1024)
    except OSError:
        return b""


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def _command(pid: int) -> str:
    args = [os.fsdecode(a) for a in _read(f"/proc/{pid}/cmdline").split(b"\0") if a]
    return " ".join(args)


def _parent_pid(pid: int) -> int:
    stat = _read(f"/proc/{pid}/stat")
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so cut at the last ")".
    fields = stat[stat.rfind(b")") + 1 :].split()
    try:
        return int(fields[1]) if stat and len(fields) > 1 else 0
    except ValueError:
        return 0


def _real_uid(pid: int) -> int:
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith(b"Uid:"):
            parts = line.split()
            if len(parts) > 1 and parts[1].isdigit():
                return int(parts[1])
    return -1


def describe_process(pid: int, uid: int | None = None) -> Requester:
    """A :class:`Requester` for ``pid``; ``uid`` (from the peer credentials) wins over /proc."""
    if pid <= 0:
        return Requester(pid=pid, uid=-1 if uid is None else uid)
    command = _command(pid)
    executable = _readlink(f"/proc/{pid}/exe") or command.split(" ", 1)[0]
    parent = _parent_pid(pid)
    parent_command = parent_executable = ""
    if parent > 0:
        comm = os.fsdecode(_read(f"/proc/{parent}/comm").strip())
        parent_command = _command(parent) or (f"[{comm}]" if comm else "")
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
