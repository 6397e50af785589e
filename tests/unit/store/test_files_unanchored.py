"""A store whose key has nowhere to anchor the generation (a YubiKey through ykcs11: no data
objects). It works, and has no rollback protection: an older copy opens (SECURITY.md)."""

from __future__ import annotations

import shutil
from pathlib import Path

from vaultd.core.model import RecordKind
from vaultd.store.files import SealedStore
from vaultd.testing.clock import FakeClock
from vaultd.testing.fakes import FakeKeyWrapper


class NoAnchor:
    """The anchor of a token without data objects (what ``EcdhTokenKey`` is on ykcs11)."""

    def __init__(self) -> None:
        self.advanced: list[int] = []

    def read_generation(self) -> None:
        return None

    def advance_generation(self, value: int) -> None:
        self.advanced.append(value)  # a no-op on the token; recorded to show it was called


def test_store_without_anchor_works_and_an_older_copy_opens(tmp_path: Path) -> None:
    path = tmp_path / "data" / "store.vault"
    anchor = NoAnchor()
    store = SealedStore(path, FakeKeyWrapper(), anchor, FakeClock())
    store.initialize()
    store.put(RecordKind.KEY_PAIR, "a", b"one")
    old = tmp_path / "old.vault"
    shutil.copy(path, old)
    store.put(RecordKind.KEY_PAIR, "b", b"two")
    store.put(RecordKind.KEY_PAIR, "b", b"three", replace=True)
    assert store.get(RecordKind.KEY_PAIR, "b") == b"three"
    assert anchor.advanced == [1, 2, 3]
    shutil.copy(old, path)  # the rollback that an anchor would refuse
    assert store.get(RecordKind.KEY_PAIR, "a") == b"one"
    assert store.names(RecordKind.KEY_PAIR) == ["a"]
