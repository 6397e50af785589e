"""Test helper (not collected): a file-backed anchor, and a child that SIGKILLs itself mid-put.

Run as ``python crash_child.py STORE_PATH ANCHOR_PATH CRASH_POINT``: it opens the store with a
fixed-key ``FakeKeyWrapper`` and replaces record ``a`` with ``NEW``, killing itself with SIGKILL
when ``atomic_write`` reaches CRASH_POINT.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from vaultd.core.model import RecordKind
from vaultd.errors import StoreRollback
from vaultd.store import atomic
from vaultd.store.files import SealedStore
from vaultd.testing.clock import FakeClock
from vaultd.testing.fakes import FakeKeyWrapper

KEY = bytes(range(32))
OLD = b"old secret"
NEW = b"new secret"


class FileAnchor:
    """A ``GenerationAnchor`` fake kept in a small file, so it survives across processes.

    It stands in for the token data object (no real token in these tests) and refuses to go
    backwards like the real one.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def read_generation(self) -> int:
        return int(self.path.read_text())

    def advance_generation(self, value: int) -> None:
        if value <= self.read_generation():
            raise StoreRollback(f"anchor refuses to move back to {value}")
        tmp = self.path.with_suffix(".new")
        tmp.write_text(str(value))
        os.replace(tmp, self.path)


def open_store(store: Path, anchor: Path) -> SealedStore:
    """The store both processes open: fixed key, file anchor, fake clock."""
    return SealedStore(store, FakeKeyWrapper(KEY, key_id="kek-1"), FileAnchor(anchor), FakeClock())


def main(store: str, anchor: str, point: str) -> None:
    def hook(name: str) -> None:
        if name == point:
            os.kill(os.getpid(), signal.SIGKILL)

    atomic.crash_hook = hook
    open_store(Path(store), Path(anchor)).put(RecordKind.KEY_PAIR, "a", NEW, replace=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
