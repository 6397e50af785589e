"""Crash-safe file replacement and private-path checks.

``atomic_write`` writes a temp file in the target's directory (``O_EXCL``, ``O_NOFOLLOW``, the
final mode), fsyncs it, optionally hard-links the current target to ``<name>.prev``, renames the
temp file over the target and fsyncs the directory.  A SIGKILL at any point leaves the old or the
new file in place plus, at worst, a temp file that :func:`cleanup_temp_files` removes.
"""

from __future__ import annotations

import os
import secrets
import shlex
import stat
from collections.abc import Callable
from pathlib import Path

from vaultd.errors import ConfigError, StoreError, UnsafePermissions

TEMP_SUFFIX = ".vaultd-tmp"
PREV_SUFFIX = ".prev"

crash_hook: Callable[[str], None] | None = None
"""Test seam, called with ``before_write``, ``mid_write``, ``after_fsync``, ``before_rename``
and ``after_rename``; production code leaves it ``None``."""


def _crash_point(name: str) -> None:
    if crash_hook is not None:
        crash_hook(name)


def _temp_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.{secrets.token_hex(8)}{TEMP_SUFFIX}")


def _write_fully(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    half = len(data) // 2
    _write_fully(fd, view[:half])
    _crash_point("mid_write")
    _write_fully(fd, view[half:])


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename or unlink inside it is durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: Path, data: bytes, *, mode: int = 0o600, keep_previous: bool = False
) -> None:
    """Replace ``path`` with ``data`` atomically and durably; the old file becomes ``.prev``.

    Raises ``StoreError`` naming the path if a step fails; temp files are removed.
    """
    tmp = _temp_path(path)
    prev = path.with_name(path.name + PREV_SUFFIX)
    link = _temp_path(prev)
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
        try:
            os.fchmod(fd, mode)
            _crash_point("before_write")
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        _crash_point("after_fsync")
        if keep_previous and os.path.lexists(path):
            os.link(path, link, follow_symlinks=False)
            os.replace(link, prev)
        _crash_point("before_rename")
        os.replace(tmp, path)
        _crash_point("after_rename")
        fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        link.unlink(missing_ok=True)
        raise StoreError(
            f"could not write {path}: {exc.strerror or exc}; check the disk and the directory"
        ) from None


def cleanup_temp_files(target: Path) -> list[str]:
    """Remove temp files a crashed ``atomic_write`` of ``target`` left; return their names.

    Only ``target``'s own temp files go: writes of other files in the directory (the state
    file, another process's store write under the store lock) may be running right now.
    """
    directory, prefix = target.parent, f".{target.name}."
    removed: list[str] = []
    for entry in os.scandir(directory):
        name = entry.name
        if (
            name.startswith(prefix)
            and name.endswith(TEMP_SUFFIX)
            and not entry.is_dir(follow_symlinks=False)
        ):
            os.unlink(entry.path)
            removed.append(entry.name)
    if removed:
        fsync_dir(directory)
    return removed


def check_private(path: Path, *, is_dir: bool) -> None:
    """Refuse a symlink, a wrong file type, a foreign owner or any group/other permission bit.

    Raises ``UnsafePermissions`` whose message holds the exact command that fixes it.
    """
    quoted = shlex.quote(str(path))
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise ConfigError(f"cannot inspect {path}: {exc.strerror or exc}") from None
    what = "directory" if is_dir else "file"
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePermissions(
            f"{path} is a symlink; vaultd needs a real {what}: replace the link with the "
            f"{what} itself (rm {quoted}, then move the real {what} there)",
            path=str(path),
        )
    if is_dir != stat.S_ISDIR(st.st_mode) or not (is_dir or stat.S_ISREG(st.st_mode)):
        raise UnsafePermissions(f"{path} is not a regular {what}; move it aside", path=str(path))
    uid = os.geteuid()
    if st.st_uid != uid:
        raise UnsafePermissions(
            f"{path} is owned by uid {st.st_uid}, not by uid {uid} running vaultd: "
            f"chown {uid} {quoted}",
            path=str(path),
        )
    if st.st_mode & 0o077:
        want = "700" if is_dir else "600"
        raise UnsafePermissions(
            f"{path} has mode {stat.S_IMODE(st.st_mode):04o}; group and others must have no "
            f"access: chmod {want} {quoted}",
            path=str(path),
        )


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` as a 0700 directory if absent, then check it with :func:`check_private`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc.strerror or exc}") from None
    else:
        os.chmod(path, 0o700)
    check_private(path, is_dir=True)
