"""Process hardening and path checks done at start-up (docs/threat-model.md T4, T22)."""

from __future__ import annotations

import ctypes
import os
import resource
import stat
import sys
from pathlib import Path

from vaultd.errors import HardeningFailed, UnsafePermissions

_PR_SET_DUMPABLE = 4
_PR_GET_DUMPABLE = 3


def harden_process() -> None:
    """Disable core dumps and make the process non-dumpable; raise if either fails."""
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (OSError, ValueError) as exc:
        raise HardeningFailed(f"cannot disable core dumps (RLIMIT_CORE): {exc}") from None
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise HardeningFailed(f"prctl(PR_SET_DUMPABLE, 0) failed: {os.strerror(err)}")
        if libc.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0) != 0:
            raise HardeningFailed("the process is still dumpable after PR_SET_DUMPABLE 0")


def check_owned_not_writable(path: Path) -> None:
    """Refuse a symlink, a foreign owner, or group/other write on ``path`` (config files)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePermissions(
            f"{path} is a symlink: replace it with a regular file", path=str(path)
        )
    if st.st_uid != os.getuid():
        raise UnsafePermissions(
            f"{path} is owned by uid {st.st_uid}, not you: `chown {os.getuid()} {path}`",
            path=str(path),
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafePermissions(
            f"{path} is writable by group or others: `chmod go-w {path}`", path=str(path)
        )
