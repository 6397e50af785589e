"""The shipped fakes behave like the ports they stand in for."""

from __future__ import annotations

import pytest

from vaultd.errors import RecordCorrupt, StoreRollback
from vaultd.testing.fakes import FakeGenerationAnchor, FakeKeyWrapper

IV = bytes(12)


def test_wrapper_round_trip_and_tag_failures() -> None:
    w = FakeKeyWrapper(bytes(32), key_id="k")
    ct = w.encrypt(IV, b"plain", b"aad")
    assert len(ct) == len(b"plain") + 16
    assert w.decrypt(IV, ct, b"aad") == b"plain"
    for iv, body, aad in [
        (IV, ct, b"other"),
        (b"\x01" + IV[1:], ct, b"aad"),
        (IV, ct[:-1] + bytes([ct[-1] ^ 1]), b"aad"),
        (IV, b"", b"aad"),
        (b"", ct, b"aad"),
    ]:
        with pytest.raises(RecordCorrupt):
            w.decrypt(iv, body, aad)


def test_wrapper_keys_and_random() -> None:
    assert FakeKeyWrapper(key_id="x").key_id == "x"
    a, b = FakeKeyWrapper(), FakeKeyWrapper()
    with pytest.raises(RecordCorrupt):
        b.decrypt(IV, a.encrypt(IV, b"p", b""), b"")
    assert len(a.random(12)) == 12 and a.random(16) != a.random(16)
    assert FakeKeyWrapper(random=lambda n: b"\x07" * n).random(3) == b"\x07\x07\x07"
    with pytest.raises(ValueError, match="32-byte"):
        FakeKeyWrapper(bytes(16))


def test_anchor_only_moves_forward() -> None:
    anchor = FakeGenerationAnchor(3)
    assert anchor.read_generation() == 3
    anchor.advance_generation(5)
    assert anchor.read_generation() == 5
    for value in (5, 4):
        with pytest.raises(StoreRollback):
            anchor.advance_generation(value)
    assert anchor.read_generation() == 5
