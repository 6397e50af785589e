"""One daemon per data dir (docs/threat-model.md T34): an exclusive ``flock`` held for the
daemon's life on ``daemon.lock`` in the data dir (not the store's write lock).

A second ``vaultd serve`` on the same data dir, whatever its socket, fails at start with
:class:`~vaultd.errors.DaemonAlreadyRunning` naming the first one's pid, so two daemons never
interleave the audit chain.  The kernel drops the lock when the holder exits, crash included.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from vaultd.errors import ConfigError, DaemonAlreadyRunning
from vaultd.system.running import Running

LOCK_FILE = "daemon.lock"
_SERVE_FIX = (
    "stop it first, or give this one its own data_dir (one daemon per data dir keeps the "
    "audit log whole)"
)


class DataDirLock(Running):
    """The held lock; :meth:`release` (or leaving the ``with`` block) lets it go."""

    def __init__(self, data_dir: Path, fix: str = _SERVE_FIX) -> None:
        """Take the lock or raise ``DaemonAlreadyRunning`` ending in ``fix`` (nothing else is
        touched)."""
        path = data_dir / LOCK_FILE
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            self._fd = os.open(path, flags, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot open the lock file {path}: {exc.strerror}") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode("ascii", "replace").strip()
            os.close(self._fd)
            who = f"pid {holder}" if holder.isdigit() else "another process"
            raise DaemonAlreadyRunning(
                f"another vaultd ({who}) already serves the data dir {data_dir}: {fix}"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        """Drop the lock (closing the file does)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def stop(self) -> None:
        """Drop the lock (the end of a ``with`` block)."""
        self.release()
