"""SealedStore on a real directory: round trips, tampering, rollback, unreadable files,
permissions (docs/threat-model.md T6, T20, T22; F29-F31, F35).

The key wrapper and anchor are the shipped fakes (real AES-GCM in software, an in-memory counter):
these tests are about the file, not the token.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from vaultd.core.model import RecordInfo, RecordKind
from vaultd.errors import (
    ConfigError,
    RecordCorrupt,
    RecordExists,
    RecordNotFound,
    StoreExists,
    StoreRollback,
    StoreUnreadable,
    UnsafePermissions,
    VaultError,
)
from vaultd.store.files import SealedStore
from vaultd.testing.clock import FakeClock
from vaultd.testing.fakes import FakeGenerationAnchor, FakeKeyWrapper

KEY = bytes(range(32))
KP, SEED = RecordKind.KEY_PAIR, RecordKind.TOTP_SEED
SECRET = b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


class FlakyAnchor(FakeGenerationAnchor):
    """The in-memory anchor fake, made to fail its next advance (a token pulled mid-write)."""

    fail_next = False

    def advance_generation(self, value: int) -> None:
        if self.fail_next:
            self.fail_next = False
            raise VaultError("token removed")
        super().advance_generation(value)


@pytest.fixture
def anchor() -> FlakyAnchor:
    return FlakyAnchor(10)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "vault" / "store.json"


@pytest.fixture
def store(path: Path, anchor: FlakyAnchor) -> SealedStore:
    s = SealedStore(path, FakeKeyWrapper(KEY, key_id="kek-1"), anchor, FakeClock())
    s.initialize()
    s.put(KP, "prod", SECRET, masked_id="AKIA****MPLE")
    s.put(KP, "dev", b"dev-secret")
    s.put(SEED, "prod", b"seed-bytes", root=True)
    return s


def _doc(path: Path) -> dict[str, Any]:
    header, _, body = path.read_bytes().partition(b"\n")
    assert header == b"VAULTD-STORE 1"
    doc: dict[str, Any] = json.loads(body)
    return doc


def _write_doc(path: Path, doc: dict[str, Any]) -> None:
    path.write_bytes(b"VAULTD-STORE 1\n" + json.dumps(doc).encode())


def _rec(doc: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    records: list[dict[str, Any]] = doc["records"]
    (rec,) = [r for r in records if (r["kind"], r["name"]) == (kind, name)]
    return rec


def test_initialize_layout(path: Path, anchor: FlakyAnchor) -> None:
    s = SealedStore(path, FakeKeyWrapper(KEY, key_id="kek-1"), anchor, FakeClock())
    assert not s.exists()
    s.initialize()
    assert s.exists()
    assert os.stat(path.parent).st_mode & 0o777 == 0o700
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert _doc(path)["generation"] == 10 == anchor.read_generation()
    assert s.list() == []
    before = path.read_bytes()
    with pytest.raises(StoreExists):
        s.initialize()
    assert path.read_bytes() == before


def test_round_trip_and_listing(store: SealedStore, anchor: FlakyAnchor) -> None:
    assert store.get(KP, "prod") == SECRET
    assert store.get(KP, "dev") == b"dev-secret"
    assert store.get(SEED, "prod") == b"seed-bytes"
    created = datetime(2026, 1, 1, tzinfo=UTC)
    assert store.list() == [
        RecordInfo(KP, "dev", created),
        RecordInfo(KP, "prod", created, masked_id="AKIA****MPLE"),
        RecordInfo(SEED, "prod", created, root=True),
    ]
    assert store.names(KP) == ["dev", "prod"]
    assert store.names(RecordKind.FIDO2_CREDENTIAL) == []
    assert anchor.read_generation() == 13 == _doc(store.path)["generation"]


def test_put_replace_remove(store: SealedStore) -> None:
    with pytest.raises(RecordExists):
        store.put(KP, "prod", b"x")
    store.put(KP, "prod", b"rotated", replace=True)
    assert store.get(KP, "prod") == b"rotated"
    assert store.list()[1].masked_id == ""
    store.remove(KP, "dev")
    with pytest.raises(RecordNotFound):
        store.get(KP, "dev")
    with pytest.raises(RecordNotFound):
        store.remove(KP, "dev")
    assert store.names(KP) == ["prod"]


def test_an_update_keeps_the_creation_time_a_replacement_does_not(path: Path) -> None:
    clock = FakeClock()
    store = SealedStore(path, FakeKeyWrapper(KEY, key_id="kek-1"), FlakyAnchor(10), clock)
    store.initialize()
    store.put(KP, "key", b"v1")
    enrolled = store.list()[0].created
    clock.advance(86_400)
    store.put(KP, "key", b"v2", replace=True, keep_created=True)
    assert store.list()[0].created == enrolled
    assert store.get(KP, "key") == b"v2"
    clock.advance(86_400)
    store.put(KP, "key", b"v3", replace=True)
    assert store.list()[0].created > enrolled


@pytest.mark.parametrize("name", ["", "../escape", "a/b", "x" * 65, "sp ace", "é"])
def test_invalid_names_refused(store: SealedStore, name: str) -> None:
    before = store.path.read_bytes()
    with pytest.raises(ConfigError):
        store.put(KP, name, b"x")
    with pytest.raises(ConfigError):
        store.get(KP, name)
    with pytest.raises(ConfigError):
        store.remove(KP, name)
    assert store.path.read_bytes() == before


def test_no_plaintext_on_disk(store: SealedStore) -> None:
    store.put(KP, "more", b"x")  # so .prev exists too
    for f in store.path.parent.iterdir():
        data = f.read_bytes()
        assert SECRET not in data and b"seed-bytes" not in data, f.name
        assert base64.b64encode(SECRET)[:20] not in data


def test_previous_generation_kept(store: SealedStore) -> None:
    before = store.path.read_bytes()
    store.put(KP, "more", b"x")
    assert store.prev_path.read_bytes() == before
    assert os.stat(store.prev_path).st_mode & 0o777 == 0o600


def test_every_record_is_resealed_per_generation(store: SealedStore) -> None:
    blob_before = _rec(_doc(store.path), "key_pair", "prod")["blob"]
    store.remove(KP, "dev")
    assert _rec(_doc(store.path), "key_pair", "prod")["blob"] != blob_before
    assert store.get(KP, "prod") == SECRET


def test_record_copied_under_other_name(store: SealedStore) -> None:
    doc = _doc(store.path)
    _rec(doc, "key_pair", "dev")["blob"] = _rec(doc, "key_pair", "prod")["blob"]
    _write_doc(store.path, doc)
    with pytest.raises(RecordCorrupt, match="'dev'"):
        store.get(KP, "dev")
    assert store.get(KP, "prod") == SECRET
    assert store.get(SEED, "prod") == b"seed-bytes"


def test_record_copied_across_kinds(store: SealedStore) -> None:
    doc = _doc(store.path)
    _rec(doc, "totp_seed", "prod")["blob"] = _rec(doc, "key_pair", "prod")["blob"]
    _write_doc(store.path, doc)
    with pytest.raises(RecordCorrupt):
        store.get(SEED, "prod")


@pytest.mark.parametrize(("field", "value"), [("masked_id", "AKIA****EVIL"), ("root", True)])
def test_metadata_edit_detected(store: SealedStore, field: str, value: object) -> None:
    doc = _doc(store.path)
    _rec(doc, "key_pair", "prod")[field] = value
    _write_doc(store.path, doc)
    with pytest.raises(RecordCorrupt):
        store.get(KP, "prod")
    assert store.get(KP, "dev") == b"dev-secret"


@pytest.mark.parametrize("offset", [0, 5, 12, 20, 30, -16, -1])
def test_bit_flip_corrupts_only_that_record(store: SealedStore, offset: int) -> None:
    """Flips in the record's header, IV, body and tag (offsets from the blob's start or end)."""
    doc = _doc(store.path)
    rec = _rec(doc, "key_pair", "prod")
    blob = bytearray(base64.b64decode(rec["blob"]))
    blob[offset] ^= 0x04
    rec["blob"] = base64.b64encode(blob).decode()
    _write_doc(store.path, doc)
    with pytest.raises(RecordCorrupt):
        store.get(KP, "prod")
    assert store.get(KP, "dev") == b"dev-secret"
    assert len(store.list()) == 3
    store.put(KP, "new", b"n")  # a corrupt record does not block writes
    assert store.get(KP, "new") == b"n"
    with pytest.raises(RecordCorrupt):
        store.get(KP, "prod")
    store.remove(KP, "prod")
    assert store.names(KP) == ["dev", "new"]


def test_older_store_is_rollback(store: SealedStore, anchor: FlakyAnchor) -> None:
    old = store.path.read_bytes()
    store.put(KP, "later", b"l")
    current = store.path.read_bytes()
    store.path.write_bytes(old)
    for call in (store.list, lambda: store.get(KP, "prod"), lambda: store.put(KP, "z", b"z")):
        with pytest.raises(StoreRollback) as info:
            call()
        assert str(store.prev_path) in str(info.value)
    assert store.path.read_bytes() == old
    assert anchor.read_generation() == 14
    store.path.write_bytes(current)  # the newest copy back: every record opens
    opened = [store.get(i.kind, i.name) for i in store.list()]
    assert opened == [b"dev-secret", b"l", SECRET, b"seed-bytes"]


def test_old_record_spliced_into_current_store(store: SealedStore) -> None:
    old_blob = _rec(_doc(store.path), "key_pair", "prod")["blob"]
    store.put(KP, "later", b"l")
    doc = _doc(store.path)
    _rec(doc, "key_pair", "prod")["blob"] = old_blob
    _write_doc(store.path, doc)
    with pytest.raises(RecordCorrupt):
        store.get(KP, "prod")
    assert store.get(KP, "later") == b"l"


def test_lost_anchor_update_recovers(store: SealedStore, anchor: FlakyAnchor) -> None:
    anchor.fail_next = True
    with pytest.raises(VaultError, match="token removed"):
        store.put(KP, "crashy", b"c")
    assert (_doc(store.path)["generation"], anchor.read_generation()) == (14, 13)
    assert store.get(KP, "crashy") == b"c"
    assert anchor.read_generation() == 14


def test_generation_far_ahead_is_unreadable(store: SealedStore) -> None:
    anchor = FakeGenerationAnchor(5)
    s = SealedStore(store.path, FakeKeyWrapper(KEY, key_id="kek-1"), anchor, FakeClock())
    with pytest.raises(StoreUnreadable, match="ahead"):
        s.list()
    assert anchor.read_generation() == 5


def test_forged_generation_bump_is_refused(store: SealedStore, anchor: FlakyAnchor) -> None:
    doc = _doc(store.path)
    doc["generation"] += 1
    _write_doc(store.path, doc)
    with pytest.raises(StoreUnreadable, match="index"):
        store.list()
    assert anchor.read_generation() == 13


@pytest.mark.parametrize("edit", ["drop", "add"])
def test_record_set_is_authenticated(store: SealedStore, edit: str) -> None:
    doc = _doc(store.path)
    if edit == "drop":
        doc["records"] = doc["records"][1:]
    else:
        doc["records"].append({**doc["records"][0], "name": "extra"})
    _write_doc(store.path, doc)
    with pytest.raises(StoreUnreadable, match="index"):
        store.list()


def test_other_key_id_is_unreadable(store: SealedStore, anchor: FlakyAnchor) -> None:
    s = SealedStore(store.path, FakeKeyWrapper(KEY, key_id="kek-2"), anchor, FakeClock())
    with pytest.raises(StoreUnreadable, match="'kek-1'"):
        s.get(KP, "prod")


def _mangle(kind: str, data: bytes) -> bytes:
    header, _, body = data.partition(b"\n")
    doc = json.loads(body)
    return {
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "header-only": header,
        "wrong-magic": b"VAULTX-STORE 1\n" + body,
        "unknown-version": b"VAULTD-STORE 2\n" + body,
        "not-json": header + b"\n{nope",
        "deep-json": header + b"\n" + b"[" * 100000,
        "missing-field": header + b"\n" + json.dumps({**doc, "index": None}).encode(),
        "extra-field": header + b"\n" + json.dumps({**doc, "x": 1}).encode(),
        "bad-generation": header + b"\n" + json.dumps({**doc, "generation": True}).encode(),
        "bad-kind": header
        + b"\n"
        + json.dumps({**doc, "records": [{**doc["records"][0], "kind": "nope"}]}).encode(),
        "bad-b64": header
        + b"\n"
        + json.dumps({**doc, "records": [{**doc["records"][0], "blob": "!!"}]}).encode(),
        "duplicate": header
        + b"\n"
        + json.dumps({**doc, "records": doc["records"] + doc["records"][:1]}).encode(),
        "bad-created": header
        + b"\n"
        + json.dumps({**doc, "records": [{**doc["records"][0], "created": "2026"}]}).encode(),
        "not-utf8": header + b"\n\xff\xfe",
    }[kind]


@pytest.mark.parametrize(
    "kind",
    [
        "empty",
        "truncated",
        "header-only",
        "wrong-magic",
        "unknown-version",
        "not-json",
        "deep-json",
        "missing-field",
        "extra-field",
        "bad-generation",
        "bad-kind",
        "bad-b64",
        "duplicate",
        "bad-created",
        "not-utf8",
    ],
)
def test_unreadable_store_is_left_untouched(store: SealedStore, kind: str) -> None:
    bad = _mangle(kind, store.path.read_bytes())
    store.path.write_bytes(bad)
    for call in (store.list, lambda: store.get(KP, "prod"), lambda: store.put(KP, "z", b"z")):
        with pytest.raises(StoreUnreadable) as info:
            call()
        assert str(store.path) in str(info.value)
        assert str(store.prev_path) in str(info.value)
    with pytest.raises(StoreExists):
        store.initialize()
    assert store.path.read_bytes() == bad


def test_missing_store_is_unreadable(store: SealedStore) -> None:
    store.path.unlink()
    with pytest.raises(StoreUnreadable, match="does not exist"):
        store.list()


@pytest.mark.parametrize(("target", "mode"), [("file", 0o644), ("file", 0o640), ("dir", 0o640)])
def test_open_permissions_refused(store: SealedStore, target: str, mode: int) -> None:
    path = store.path if target == "file" else store.path.parent
    path.chmod(mode)
    with pytest.raises(UnsafePermissions) as info:
        store.list()
    assert info.value.path == str(path)
    assert f"chmod {'600' if target == 'file' else '700'} {path}" in str(info.value)


@pytest.mark.parametrize("target", ["file", "dir"])
def test_symlinks_refused(store: SealedStore, tmp_path: Path, target: str) -> None:
    if target == "file":
        real = tmp_path / "elsewhere.json"
        store.path.rename(real)
        store.path.symlink_to(real)
        link = store.path
        s = store
    else:
        link = tmp_path / "linked"
        link.symlink_to(store.path.parent)
        s = SealedStore(
            link / "store.json",
            FakeKeyWrapper(KEY, key_id="kek-1"),
            FakeGenerationAnchor(13),
            FakeClock(),
        )
    with pytest.raises(UnsafePermissions, match="symlink") as info:
        s.list()
    assert info.value.path == str(link)


def test_leftover_temp_files_cleaned_on_open(store: SealedStore, anchor: FlakyAnchor) -> None:
    leftover = store.path.parent / ".store.json.0123456789abcdef.vaultd-tmp"
    leftover.write_bytes(b"half a store")
    s = SealedStore(store.path, FakeKeyWrapper(KEY, key_id="kek-1"), anchor, FakeClock())
    assert s.names(KP) == ["dev", "prod"]
    assert not leftover.exists()
    assert sorted(p.name for p in store.path.parent.iterdir()) == ["store.json", "store.json.prev"]


def test_a_touch_keeps_the_enrolment_date_of_a_fido2_credential(path: Path) -> None:
    from dataclasses import replace

    from vaultd.core.records import Fido2CredentialRecord
    from vaultd.fido2.gate import load_enrolled, save_enrolled

    clock = FakeClock()
    store = SealedStore(path, FakeKeyWrapper(KEY, key_id="kek-1"), FlakyAnchor(10), clock)
    store.initialize()
    cred = Fido2CredentialRecord("desk", b"id", b"pk", sign_count=1, created=clock.now())
    save_enrolled(store, cred, new=True)
    enrolled = store.list()[0].created
    clock.advance(7 * 86_400)
    save_enrolled(store, replace(cred, sign_count=9, last_used=clock.now()))
    assert store.list()[0].created == enrolled
    assert load_enrolled(store)[0].sign_count == 9


class CountingWrapper(FakeKeyWrapper):
    """The wrapper fake, counting opens: each is a token operation (a touch on a touch-always
    YubiKey)."""

    opens = 0

    def decrypt(self, iv: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        self.opens += 1
        return super().decrypt(iv, ciphertext, aad)


def test_an_unchanged_file_is_authenticated_once(path: Path, anchor: FlakyAnchor) -> None:
    """A request lists, then opens one record: the index is opened once per file content, not
    once per load; a file another writer changed is authenticated again."""
    wrapper = CountingWrapper(KEY, key_id="kek-1")
    writer = SealedStore(path, FakeKeyWrapper(KEY, key_id="kek-1"), anchor, FakeClock())
    writer.initialize()
    writer.put(KP, "prod", SECRET)
    reader = SealedStore(path, wrapper, anchor, FakeClock())
    assert [i.name for i in reader.list()] == ["prod"]
    assert wrapper.opens == 1  # the index
    assert reader.get(KP, "prod") == SECRET
    assert wrapper.opens == 2  # the record only
    writer.put(KP, "dev", b"dev-secret")  # another process's write
    assert [i.name for i in reader.list()] == ["dev", "prod"]
    assert wrapper.opens == 3  # new content: the index again
    reader.put(SEED, "prod", b"seed")  # its own write: the bytes it wrote are authentic
    opens = wrapper.opens
    assert len(reader.list()) == 3
    assert wrapper.opens == opens


def test_a_file_edited_after_it_was_authenticated_is_refused(store: SealedStore) -> None:
    """What was authenticated is the file's bytes: an edit after a good load is checked anew."""
    assert len(store.list()) == 3
    doc = _doc(store.path)
    doc["records"] = doc["records"][1:]
    _write_doc(store.path, doc)
    with pytest.raises(StoreUnreadable, match="index failed authentication"):
        store.list()


def test_a_sealed_generation_in_a_store_only_the_token_seals_is_refused(
    store: SealedStore,
) -> None:
    """Only a tagged store (public-key schemes) keeps records at their own generation; here the
    index covers names alone, so a record would be spliced back with its old generation."""
    doc = _doc(store.path)
    _rec(doc, "key_pair", "prod")["sealed"] = doc["generation"] - 1
    _write_doc(store.path, doc)
    with pytest.raises(StoreUnreadable, match="its own sealed generation"):
        store.list()


@pytest.mark.parametrize("sealed", ["1", -1, True, 10**20])
def test_a_malformed_sealed_generation_is_refused(store: SealedStore, sealed: object) -> None:
    doc = _doc(store.path)
    _rec(doc, "key_pair", "prod")["sealed"] = sealed
    _write_doc(store.path, doc)
    with pytest.raises(StoreUnreadable, match="sealed generation that is not an integer"):
        store.list()


def test_a_record_sealed_after_its_store_is_refused(store: SealedStore) -> None:
    doc = _doc(store.path)
    _rec(doc, "key_pair", "prod")["sealed"] = doc["generation"] + 1
    _write_doc(store.path, doc)
    with pytest.raises(StoreUnreadable, match="sealed after the store's generation"):
        store.list()
