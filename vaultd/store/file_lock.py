"""The store's cross-process lock: one ``flock`` on a file beside the store.

Every process that opens the sealed store (the daemon, each CLI command) takes it around one
store operation at a time, never around a touch, a prompt or a network call, so no holder can
keep the daemon's token worker waiting longer than one store write (``docs/architecture.md``).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class StoreFileLock:
    """An exclusive ``flock`` on ``path`` (created 0600), taken per store operation."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock for the ``with`` body (blocks while another process holds it)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
