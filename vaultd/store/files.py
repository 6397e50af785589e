"""The sealed credential store: one versioned file of AES-GCM sealed records.

File format v1 (UTF-8)::

    VAULTD-STORE 1\\n
    {"generation": G, "key_id": K, "index": B64, "records": [
      {"kind": ..., "name": ..., "created": "2026-01-01T00:00:00Z", "masked_id": ...,
       "root": false, "blob": B64}, ...]}

Each ``blob`` is an envelope v1 (:mod:`vaultd.core.envelope`) sealed with the record's kind,
name, the store generation ``G`` and, as context, its created/masked_id/root metadata, so a
record moved to another name, an edited metadata field or a record from an older store fails as
``RecordCorrupt`` while the other records still open.  ``index`` seals an empty plaintext whose
context lists every (kind, name): adding or dropping a record, or editing ``G``, makes the whole
file ``StoreUnreadable``.

Under a key that seals with only a public key (token ECDH, token RSA-OAEP: ``ecdh-p256:``,
``rsa-oaep:`` key ids), anyone who can read that key from the token (no PIN needed) could seal
records and an index of their own.  Such a store also carries ``"index_tag": B64``: the token's
audit tag (HMAC-SHA256 in the token, or an ECDSA P-256 or RSA-PSS signature by a token key) over
a SHA-256 of the key id, ``G``, the index blob and every record with its metadata.  Only the
token's owner can make it, so a forged store, or one forged record in a real store, is
``StoreUnreadable`` (docs/threat-model.md T6).  Token AEAD stores need no tag (only the token
can seal) and keep the format of the previous release.

A store with backup keys (:mod:`vaultd.keys.recipients`, :mod:`vaultd.keys.recovery`,
:mod:`vaultd.keys.backup_token`) is sealed to a recipient set (key id ``recipients:...``) and
also carries ``"recipients"``: the token as ``{"id": ...}`` and each backup as ``{"id",
"public", "auth", "tag"}`` (a backup token also with ``"token": {"module", "label", "key"}``),
where ``auth`` is its authentication key K sealed to the set and ``tag`` is HMAC(K) over the
same digest as the index tag (which then also covers every recipient's id, point, ``auth`` and
backup token location).  Opened with a backup alone (token lost), the store is checked by
re-deriving K from the typed recovery key or in the backup token: only a holder of that backup
or of the token could have written the tag.

``vaultd rekey --module`` moves a store to another token (or scheme): the new token is the
primary, and the old one stays as a transitional recipient ``{"id", "tag"}`` whose ``tag`` is
the old token's audit tag over the same digest, so the store opens with the old config or the
new one.  The old token can read such a store but not write it (it cannot make the new
token's index tag); the new token's first write drops the old one (it cannot remake its tag).

Every write of a token AEAD store re-seals all records under ``G + 1``.  A tagged store (the
public-key schemes) keeps the records it does not change as they are, each with ``"sealed": S``,
the generation its blob was sealed under (its AAD's), which the tag covers: opening each record
would cost a touch per record on a touch-always YubiKey, and the tag already binds every record
and its ``S`` to ``G``, so an older copy of a record put back is ``StoreUnreadable``.  A token
AEAD store carrying ``sealed`` is refused (its index covers names only).  Each write replaces
the file atomically (the old one is kept as ``<name>.prev``) and then advances the
``GenerationAnchor`` held outside the file.  On load a file one generation ahead of the anchor
is a write whose anchor update was lost, and the anchor catches up; an older file is
``StoreRollback``.  A key with nowhere to keep an anchor (``read_generation`` is ``None``: a
YubiKey through ykcs11) takes the file's generation as it is: no rollback protection there
(SECURITY.md).  Nothing but sealed blobs reaches the disk.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import hashlib
import hmac
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Protocol

from vaultd.core.envelope import MAX_GENERATION, pack_fields, seal, seals_publicly, unseal
from vaultd.core.model import RECORD_NAME_RE, RecordInfo, RecordKind, utc
from vaultd.core.ports import Clock, GenerationAnchor, KeyWrapper, SealingKey
from vaultd.errors import (
    AuditTampered,
    BadRequest,
    ConfigError,
    RecordCorrupt,
    RecordExists,
    RecordNotFound,
    StoreError,
    StoreExists,
    StoreRollback,
    StoreUnreadable,
)
from vaultd.keys.recipients import (
    AbsentRecipient,
    Opener,
    Recipient,
    RecipientSet,
    TokenRecipient,
    set_key_id,
)
from vaultd.keys.recovery import (
    KIND,
    TOKEN_KIND,
    Backup,
    BackupOpener,
    PublicRecovery,
    TokenRef,
    auth_tag,
    recipient_id,
)
from vaultd.store.atomic import (
    PREV_SUFFIX,
    atomic_write,
    check_private,
    cleanup_temp_files,
    ensure_private_dir,
)

log = logging.getLogger(__name__)

MAGIC = b"VAULTD-STORE"
FORMAT_VERSION = 1
MAX_FILE_SIZE = 16 * 1024 * 1024
INDEX_KIND = "store-index"
INDEX_NAME = "index"
INDEX_TAG_DOMAIN = b"vaultd/store-index-tag/v1"
_TOP_KEYS = frozenset({"generation", "key_id", "index", "records"})
_OPTIONAL_TOP_KEYS = frozenset({"index_tag", "recipients"})
_BACKUP_KEYS = frozenset({"id", "public", "auth", "tag"})
_TRANSITIONAL_KEYS = frozenset({"id", "tag"})
_TOKEN_BACKUP_KEYS = _BACKUP_KEYS | {"token"}
_TOKEN_REF_KEYS = frozenset({"module", "label", "key"})
BACKUP_AUTH_KIND = "backup-auth"
_RECORD_KEYS = frozenset({"kind", "name", "created", "masked_id", "root", "blob"})

_Key = tuple[RecordKind, str]


class IndexAuthenticator(Protocol):
    """A tag only the key's holder can make: the token's audit MAC or signature."""

    def mac(self, data: bytes) -> bytes: ...

    def mac_verify(self, data: bytes, tag: bytes) -> None:
        """Raise ``AuditTampered`` unless ``tag`` is this key's tag of ``data``."""
        ...


class _Malformed(Exception):
    """Internal: the file's body does not follow the v1 schema (the reason is the message)."""


@dataclass(frozen=True, slots=True)
class _Record:
    kind: RecordKind
    name: str
    created: str
    masked_id: str
    root: bool
    blob: bytes
    sealed: int | None = None  # the generation it was sealed at, where not the store's

    @property
    def key(self) -> _Key:
        return (self.kind, self.name)

    def info(self) -> RecordInfo:
        created = datetime.fromisoformat(self.created)
        return RecordInfo(self.kind, self.name, created, self.masked_id, self.root)

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind.value,
            "name": self.name,
            "created": self.created,
            "masked_id": self.masked_id,
            "root": self.root,
            "blob": base64.b64encode(self.blob).decode("ascii"),
        } | ({} if self.sealed is None else {"sealed": self.sealed})

    def digest_fields(self) -> bytes:
        """What the store's tags cover of this record."""
        fields = [self.kind.value.encode(), self.name.encode()]
        fields += [_context(self.created, self.masked_id, self.root), self.blob]
        if self.sealed is not None:
            fields.append(self.sealed.to_bytes(8, "big"))
        return pack_fields(*fields)


@dataclass(frozen=True, slots=True)
class _Entry:
    """One recipient in the file: the token (id alone), the old token while a store moves to
    another (id and tag), a recovery key (all four), or a backup token (all four and where it
    is found)."""

    id: str
    public: bytes | None = None
    auth: bytes = b""
    tag: bytes = b""
    token: TokenRef | None = None

    def to_json(self) -> dict[str, object]:
        if self.public is None:
            old: dict[str, object] = {"id": self.id}
            return old | ({"tag": base64.b64encode(self.tag).decode("ascii")} if self.tag else {})
        fields = {"public": self.public, "auth": self.auth, "tag": self.tag}
        out: dict[str, object] = {"id": self.id}
        if self.token is not None:
            ref = self.token
            out["token"] = {"module": ref.module, "label": ref.label, "key": ref.key}
        return out | {k: base64.b64encode(v).decode("ascii") for k, v in fields.items()}

    @property
    def transitional(self) -> bool:
        """Whether this is the old token of a store moved to another token."""
        return self.public is None and bool(self.tag)

    def digest_fields(self) -> bytes:
        """What the store's tags cover of this recipient (a backup token: where it is, too)."""
        ref = self.token
        where = () if ref is None else (ref.module.encode(), ref.label.encode(), ref.key.encode())
        return pack_fields(self.id.encode(), self.public or b"", self.auth, *where)


@dataclass(frozen=True, slots=True)
class _State:
    generation: int
    records: dict[_Key, _Record]
    wrapper: KeyWrapper
    entries: tuple[_Entry, ...] | None


@dataclass(frozen=True, slots=True)
class _Parsed:
    generation: int
    key_id: str
    index: bytes
    records: dict[_Key, _Record]
    index_tag: bytes | None
    entries: tuple[_Entry, ...] | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every record's plaintext and the backups of one store generation, for a re-seal."""

    generation: int
    records: builtins.list[tuple[RecordInfo, bytes]]
    backups: builtins.list[Backup]


class _Unanchored:
    """No generation anchor: a store opened with a backup alone (the token is lost)."""

    def read_generation(self) -> int | None:
        return None

    def advance_generation(self, value: int) -> None:
        """Nothing to advance."""


class _NoToken:
    """The wrapper of a store opened without its token: it can neither seal nor open."""

    key_id = "absent"

    def random(self, n: int) -> bytes:
        return os.urandom(n)

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        raise BadRequest("the token is absent: a store opened with a backup is read-only")

    decrypt = encrypt


def _context(created: str, masked_id: str, root: bool) -> bytes:
    return pack_fields(created.encode(), masked_id.encode(), b"1" if root else b"0")


def _index_context(keys: builtins.list[_Key]) -> bytes:
    return pack_fields(*(pack_fields(k.value.encode(), n.encode()) for k, n in sorted(keys)))


def _tag_digest(
    key_id: str,
    generation: int,
    index: bytes,
    records: builtins.list[_Record],
    entries: tuple[_Entry, ...] | None = None,
) -> bytes:
    """What the index tag covers: key id, generation, index blob, every record and its blob,
    and (with backups) every recipient's id, point and sealed K."""
    fields = [INDEX_TAG_DOMAIN, key_id.encode(), generation.to_bytes(8, "big"), index]
    fields += [r.digest_fields() for r in sorted(records, key=lambda r: r.key)]
    for e in entries or ():
        fields.append(e.digest_fields())
    return hashlib.sha256(pack_fields(*fields)).digest()


def _rfc3339(dt: datetime) -> str:
    return utc(dt).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _check_name(name: str) -> None:
    if not RECORD_NAME_RE.match(name):
        raise ConfigError(
            f"record name {name[:80]!r} is invalid: use 1-64 characters of A-Z a-z 0-9 . _ -"
        )


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise _Malformed(f"{what} is not a string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise _Malformed(f"{what} is not base64") from None


def _parse_record(obj: object) -> _Record:
    if not isinstance(obj, dict) or not _RECORD_KEYS <= set(obj) <= _RECORD_KEYS | {"sealed"}:
        raise _Malformed(
            f"a record must be an object with exactly {sorted(_RECORD_KEYS)}, and optionally sealed"
        )
    kind, name, created = obj["kind"], obj["name"], obj["created"]
    if not isinstance(kind, str) or kind not in {k.value for k in RecordKind}:
        raise _Malformed(f"unknown record kind {str(kind)[:40]!r}")
    if not isinstance(name, str) or not RECORD_NAME_RE.match(name):
        raise _Malformed("a record name is invalid")
    if not isinstance(created, str):
        raise _Malformed(f"record {name!r} has no created time")
    try:
        created_dt = datetime.fromisoformat(created)
    except ValueError:
        raise _Malformed(f"record {name!r} has a created time that is not RFC 3339") from None
    if created_dt.tzinfo is None:
        raise _Malformed(f"record {name!r} has a created time without a UTC offset")
    if not isinstance(obj["masked_id"], str) or not isinstance(obj["root"], bool):
        raise _Malformed(f"record {name!r} has a malformed masked_id or root field")
    blob = _b64(obj["blob"], f"record {name!r} blob")
    sealed = obj.get("sealed")
    if sealed is not None and (type(sealed) is not int or not 0 <= sealed <= MAX_GENERATION):
        raise _Malformed(f"record {name!r} has a sealed generation that is not an integer")
    return _Record(RecordKind(kind), name, created, obj["masked_id"], obj["root"], blob, sealed)


def _parse_token_ref(obj: object) -> TokenRef:
    if not isinstance(obj, dict) or set(obj) != _TOKEN_REF_KEYS:
        raise _Malformed(f"a backup token must be an object with {sorted(_TOKEN_REF_KEYS)}")
    if not all(isinstance(v, str) and v for v in obj.values()):
        raise _Malformed("a backup token's module, label or key is not a non-empty string")
    return TokenRef(obj["module"], obj["label"], obj["key"])


def _parse_entry(obj: object) -> _Entry:
    shapes = ({"id"}, _TRANSITIONAL_KEYS, _BACKUP_KEYS, _TOKEN_BACKUP_KEYS)
    if not isinstance(obj, dict) or set(obj) not in shapes:
        raise _Malformed(
            f"a recipient must be an object with id, id and tag, or {sorted(_BACKUP_KEYS)} "
            "(and token)"
        )
    rid = obj["id"]
    if not isinstance(rid, str) or not rid:
        raise _Malformed("a recipient id is missing")
    if "public" not in obj:
        old_tag = _b64(obj["tag"], "an old token's tag") if "tag" in obj else b""
        if "tag" in obj and not old_tag:
            raise _Malformed(f"recipient {rid[:80]!r} has an empty tag")
        return _Entry(rid, tag=old_tag)
    public = _b64(obj["public"], f"recipient {rid[:80]!r} public point")
    token = _parse_token_ref(obj["token"]) if "token" in obj else None
    if recipient_id(public, KIND if token is None else TOKEN_KIND) != rid:
        raise _Malformed(f"recipient {rid[:80]!r} does not match its public point")
    auth, tag = _b64(obj["auth"], "a sealed K"), _b64(obj["tag"], "a tag")
    return _Entry(rid, public, auth, tag, token)


def _parse_entries(obj: object) -> tuple[_Entry, ...]:
    if not isinstance(obj, list) or not obj:
        raise _Malformed("recipients is not a non-empty list")
    entries = tuple(_parse_entry(item) for item in obj)
    if len({e.id for e in entries}) != len(entries):
        raise _Malformed("a recipient appears twice")
    if sum(e.public is None and not e.transitional for e in entries) != 1:
        raise _Malformed("the recipients must name exactly one token")
    if sum(e.transitional for e in entries) > 1:
        raise _Malformed("the recipients name more than one old token")
    return entries


def _parse_body(obj: object) -> _Parsed:
    if not isinstance(obj, dict) or not _TOP_KEYS <= set(obj) <= _TOP_KEYS | _OPTIONAL_TOP_KEYS:
        raise _Malformed(
            f"the body must be a JSON object with exactly {sorted(_TOP_KEYS)}, and "
            "optionally index_tag and recipients"
        )
    generation, key_id, records = obj["generation"], obj["key_id"], obj["records"]
    if type(generation) is not int or not 0 <= generation <= MAX_GENERATION:
        raise _Malformed("the generation is not a non-negative integer")
    if not isinstance(key_id, str) or not key_id:
        raise _Malformed("the key id is missing")
    if not isinstance(records, list):
        raise _Malformed("records is not a list")
    by_key: dict[_Key, _Record] = {}
    for item in records:
        record = _parse_record(item)
        if record.key in by_key:
            raise _Malformed(f"record {record.kind}/{record.name} appears twice")
        if record.sealed is not None and record.sealed > generation:
            raise _Malformed(f"record {record.name!r} is sealed after the store's generation")
        by_key[record.key] = record
    tag = _b64(obj["index_tag"], "the index tag") if "index_tag" in obj else None
    entries = _parse_entries(obj["recipients"]) if "recipients" in obj else None
    return _Parsed(generation, key_id, _b64(obj["index"], "the index"), by_key, tag, entries)


class SealedStore:
    """Sealed records in one crash-safe file, bound to a generation anchored outside it.

    Every method re-reads the file and checks it against the anchor; its index and tag are
    authenticated again whenever its bytes differ from those this object last authenticated or
    wrote (on a touch-always key each authentication is a touch, so a request that loads the
    store twice costs no extra touch). Writes go through :func:`atomic_write`.
    ``file_lock()`` (the cross-process :class:`~vaultd.store.file_lock.StoreFileLock`) is held
    around each operation, and only for that operation.
    A ``wrapper`` that seals with a public key (token ECDH) needs an ``authenticator`` (the
    token's audit key) to tag and check the index; ``ValueError`` without one.
    """

    def __init__(
        self,
        path: Path,
        wrapper: KeyWrapper,
        anchor: GenerationAnchor,
        clock: Clock,
        *,
        file_lock: Callable[[], AbstractContextManager[None]] = nullcontext,
        authenticator: IndexAuthenticator | None = None,
        recovery: BackupOpener | None = None,
    ) -> None:
        if authenticator is None and recovery is None and seals_publicly(wrapper.key_id):
            raise ValueError(
                f"key {wrapper.key_id!r} seals with a public key: the store needs an "
                "authenticator (the token's audit key) to tag its index"
            )
        self.path = path
        self.prev_path = path.with_name(path.name + PREV_SUFFIX)
        self._wrapper = wrapper
        self._anchor = anchor
        self._clock = clock
        self._thread_lock = threading.Lock()
        self._file_lock = file_lock
        self._authenticator = authenticator
        self._recovery = recovery
        self._cleaned = False
        self._authentic: bytes | None = None  # SHA-256 of the bytes last authenticated or written

    @classmethod
    def for_recovery(
        cls,
        path: Path,
        key: BackupOpener,
        clock: Clock,
        *,
        file_lock: Callable[[], AbstractContextManager[None]] = nullcontext,
    ) -> SealedStore:
        """The store read with a backup alone (a typed recovery key, a backup token):
        read-only, checked by the backup's K tag."""
        return cls(path, _NoToken(), _Unanchored(), clock, file_lock=file_lock, recovery=key)

    # --- public API ------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """This process's threads, then other processes, for one operation."""
        with self._thread_lock, self._file_lock():
            yield

    def exists(self) -> bool:
        """Whether a store file (or anything else) is at ``path``."""
        return os.path.lexists(self.path)

    def initialize(self, backups: Sequence[Backup] = ()) -> None:
        """Create an empty store at the anchor's generation, sealed to the token and
        ``backups``; refuses if a file is present."""
        with self._locked():
            ensure_private_dir(self.path.parent)
            self._cleanup()
            if self.exists():
                raise StoreExists(
                    f"a store already exists at {self.path}; vaultd will not overwrite it"
                )
            generation = self._anchor.read_generation() or 0
            wrapper = self._set_for(backups)
            atomic_write(self.path, self._serialize(generation, [], wrapper, backups))

    def list(self) -> builtins.list[RecordInfo]:
        """Non-secret facts about every record, sorted by kind and name."""
        with self._locked():
            state = self._load()
        return [state.records[k].info() for k in sorted(state.records)]

    def names(self, kind: RecordKind) -> builtins.list[str]:
        """Sorted names of the records of ``kind``."""
        with self._locked():
            state = self._load()
        return sorted(name for k, name in state.records if k == kind)

    def get(self, kind: RecordKind, name: str) -> bytes:
        """The plaintext of one record; ``RecordCorrupt`` if it fails authentication."""
        _check_name(name)
        with self._locked():
            state = self._load()
            record = self._find(state, kind, name)
            try:
                return self._open(state, record)
            except RecordCorrupt as exc:
                raise RecordCorrupt(
                    f"{kind} record {name!r} in {self.path} is corrupt ({exc}); "
                    "remove it and add it again"
                ) from None

    def put(
        self,
        kind: RecordKind,
        name: str,
        plaintext: bytes,
        *,
        masked_id: str = "",
        root: bool = False,
        replace: bool = False,
        keep_created: bool = False,
    ) -> None:
        """Seal and store a record; ``RecordExists`` if present and ``replace`` is false.

        ``keep_created`` keeps a replaced record's creation time (an update of the same thing,
        such as a FIDO2 credential's signCount); otherwise the record is new as of now.
        """
        _check_name(name)
        with self._locked():
            state = self._load()
            self._refuse_old_token(state)
            if (kind, name) in state.records and not replace:
                raise RecordExists(
                    f"a {kind} record named {name!r} already exists in {self.path}; "
                    "remove it first, or replace it (`vaultd add --replace`)"
                )
            generation = state.generation + 1
            old = state.records.get((kind, name))
            created = old.created if keep_created and old else _rfc3339(self._clock.now())
            backups = self._backups(state)
            blob = seal(
                self._write_wrapper(state, backups),
                plaintext,
                kind=kind.value,
                name=name,
                generation=generation,
                context=_context(created, masked_id, root),
            )
            new = _Record(kind, name, created, masked_id, root, blob)
            keep = [r for k, r in state.records.items() if k != new.key]
            self._commit(state, keep, new, backups)

    def remove(self, kind: RecordKind, name: str) -> None:
        """Delete a record (a corrupt one too); ``RecordNotFound`` if absent."""
        _check_name(name)
        with self._locked():
            state = self._load()
            self._find(state, kind, name)
            keep = [r for k, r in state.records.items() if k != (kind, name)]
            self._refuse_old_token(state)
            self._commit(state, keep, None, self._backups(state))

    def backup_tokens(self) -> dict[str, TokenRef]:
        """Where each backup token is found, by recipient id (no record is opened)."""
        with self._locked():
            state = self._load()
        return {e.id: e.token for e in state.entries or () if e.token is not None}

    def recipients(self) -> builtins.list[str]:
        """The ids of everyone who can open the store: the token first, then the backups."""
        with self._locked():
            state = self._load()
        if state.entries is None:
            return [self._wrapper.key_id]
        order = sorted(state.entries, key=lambda e: (e.public is not None, e.transitional))
        return [e.id for e in order]

    def snapshot(self) -> Snapshot:
        """Every record opened, and the backups' K; ``RecordCorrupt`` names a bad record."""
        with self._locked():
            return self._snapshot(self._load())

    def reseal(self, backups: Sequence[Backup] | None = None) -> None:
        """Re-seal every record to the token and ``backups`` (``None``: the backups the store
        has; ``[]``: the token alone, the format of a store without backups), atomically."""
        with self._locked():
            state = self._load()
            self._refuse_old_token(state)
            snap = self._snapshot(state)
            self._write_snapshot(snap, snap.backups if backups is None else backups)

    def adopt(self, snap: Snapshot, backups: Sequence[Backup]) -> None:
        """Write ``snap`` sealed to this store's token and ``backups``, replacing the file.

        For a recovery: the token here is new, so its anchor is first brought to the
        snapshot's generation; a crash anywhere leaves a file the token or the recovery key
        opens, and running the recovery again completes it.
        """
        with self._locked():
            self._write_adopted(snap, backups, None)

    def move_to(self, snap: Snapshot, backups: Sequence[Backup], old: SealingKey) -> None:
        """Write ``snap`` (read with the ``old`` token) sealed to this store's new token, to
        ``old`` as a transitional recipient and to ``backups``, replacing the file in one write.

        Both tokens' anchors end at the new generation, so the old config and the new one
        open it; ``StoreError`` if the file changed since ``snap`` was read.
        """
        with self._locked():
            current = self._parse(self._read()).generation
            if current != snap.generation:
                raise StoreError(
                    f"store {self.path} changed while it was being re-sealed (generation "
                    f"{snap.generation} became {current}); nothing was written: run it again"
                )
            self._write_adopted(snap, backups, old)

    def _write_adopted(
        self, snap: Snapshot, backups: Sequence[Backup], old: SealingKey | None
    ) -> None:
        """Bring this token's anchor to the snapshot's generation, then write past it."""
        anchored = self._anchor.read_generation()
        if anchored is not None and anchored < snap.generation:
            self._anchor.advance_generation(snap.generation)
        self._write_snapshot(snap, backups, max(snap.generation, anchored or 0), old)

    # --- reading --------------------------------------------------------------------------

    def _cleanup(self) -> None:
        if not self._cleaned:
            for name in cleanup_temp_files(self.path):
                log.warning("removed %s left by an interrupted write", name)
            self._cleaned = True

    def _unreadable(self, reason: str) -> StoreUnreadable:
        return StoreUnreadable(
            f"store {self.path} is unreadable: {reason}. vaultd has left it untouched; move it "
            f"aside and put back a good copy (the previous generation is kept at "
            f"{self.prev_path})"
        )

    def _read(self) -> bytes:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise self._unreadable(exc.strerror or str(exc)) from None
        try:
            size = os.fstat(fd).st_size
            if size > MAX_FILE_SIZE:
                raise self._unreadable(f"it is {size} bytes, over the {MAX_FILE_SIZE} limit")
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
            return b"".join(chunks)
        except OSError as exc:
            raise self._unreadable(exc.strerror or str(exc)) from None
        finally:
            os.close(fd)

    def _parse(self, data: bytes) -> _Parsed:
        line, newline, body = data.partition(b"\n")
        if not newline:
            raise self._unreadable("it is empty or truncated (no header line)")
        magic, _, version = line.partition(b" ")
        if magic != MAGIC:
            raise self._unreadable("wrong magic: it is not a vaultd store")
        if version != str(FORMAT_VERSION).encode():
            raise self._unreadable(
                f"unknown format version {version[:16]!r}; this vaultd reads version "
                f"{FORMAT_VERSION}"
            )
        try:
            return _parse_body(json.loads(body))
        except (ValueError, RecursionError):
            raise self._unreadable("its body is truncated or not JSON") from None
        except _Malformed as exc:
            raise self._unreadable(str(exc)) from None

    def _load(self) -> _State:
        check_private(self.path.parent, is_dir=True)
        self._cleanup()
        if not self.exists():
            raise self._unreadable("the file does not exist (run `vaultd init` to create one)")
        check_private(self.path, is_dir=False)
        data = self._read()
        parsed = self._parse(data)
        generation, records = parsed.generation, parsed.records
        anchored = self._anchor.read_generation()
        if anchored is None:  # a token without data objects: no rollback protection
            anchored = generation
        if generation < anchored:
            raise StoreRollback(
                f"store {self.path} holds generation {generation} but the token anchors "
                f"generation {anchored}: it is an older copy and vaultd will not use it. Put back "
                f"the newest store file (the previous generation is kept at {self.prev_path}); "
                "if none exists, move the file aside and enrol again with `vaultd init`"
            )
        if generation > anchored + 1:
            raise self._unreadable(
                f"its generation {generation} is ahead of the token's anchor {anchored} "
                "(a store from another token?)"
            )
        wrapper = self._wrapper_for(parsed)
        digest = hashlib.sha256(data).digest()
        if digest != self._authentic:  # a digest of the file, no secret: a plain compare
            self._authenticate(parsed, wrapper)
            self._authentic = digest
        if generation == anchored + 1:
            log.warning("store generation %d was not anchored; advancing the anchor", generation)
            self._anchor.advance_generation(generation)
        return _State(generation, records, wrapper, parsed.entries)

    def _authenticate(self, parsed: _Parsed, wrapper: KeyWrapper) -> None:
        """Check the index tag, then open the index where the tag cannot vouch for it: the
        records are the ones the token sealed.

        Where anyone with the public key could seal, the tag (required there) covers all the
        index does, so the index is not opened: on a touch-always key that open would be a
        second touch for a request that opens one record.  Elsewhere the index covers names
        alone, so a record there may not carry its own sealed generation."""
        self._check_tag(parsed)
        if seals_publicly(parsed.key_id):
            return
        if any(r.sealed is not None for r in parsed.records.values()):
            raise self._unreadable(
                "a record carries its own sealed generation, which only stores that carry an "
                "index tag may (edited?)"
            )
        try:
            unseal(
                wrapper,
                parsed.index,
                kind=INDEX_KIND,
                name=INDEX_NAME,
                generation=parsed.generation,
                context=_index_context(builtins.list(parsed.records)),
            )
        except RecordCorrupt:
            raise self._unreadable(
                "its index failed authentication (records added or removed, or the header edited)"
            ) from None

    def _opener(self) -> Opener:
        return self._recovery or TokenRecipient(self._wrapper)

    def _wrapper_for(self, parsed: _Parsed) -> KeyWrapper:
        """The token itself, or the recipient set the file names, opened by this store's key."""
        if parsed.entries is None:
            if parsed.key_id != self._wrapper.key_id:
                raise self._unreadable(
                    f"it is sealed under key id {parsed.key_id!r} but the token's key is "
                    f"{self._wrapper.key_id!r}; use the token that holds {parsed.key_id!r}"
                )
            return self._wrapper
        ids = [e.id for e in parsed.entries]
        if parsed.key_id != set_key_id(ids):
            raise self._unreadable("its recipient list does not match its key id (edited?)")
        opener = self._opener()
        if opener.id not in ids:
            raise self._unreadable(
                f"it is sealed to {', '.join(ids)}; {opener.id!r} is not one of them (another "
                "token or recovery key?)"
            )
        return RecipientSet([self._recipient(e, opener) for e in parsed.entries], opener)

    @staticmethod
    def _recipient(entry: _Entry, opener: Opener) -> Recipient:
        if entry.id == opener.id:
            return opener
        if entry.public is None:
            return AbsentRecipient(entry.id)
        return PublicRecovery(entry.public, entry.id.partition(":")[0])

    def _check_recovery_tag(self, parsed: _Parsed, key: BackupOpener) -> None:
        """The store opened by a backup alone: its K tag, not the token's, vouches."""
        entry = next(e for e in parsed.entries or () if e.id == key.id)
        digest = _tag_digest(
            parsed.key_id,
            parsed.generation,
            parsed.index,
            builtins.list(parsed.records.values()),
            parsed.entries,
        )
        if not hmac.compare_digest(entry.tag, auth_tag(key.auth_key(), digest)):
            what = "backup token" if entry.token is not None else "recovery key"
            raise self._unreadable(
                f"its tag by the {what} does not match its records: it was not written by "
                "vaultd with this vault's token (forged, or records edited)"
            )

    def _check_tag(self, parsed: _Parsed) -> None:
        """Verify the index tag; required where anyone with the public key could seal."""
        if self._recovery is not None:
            self._check_recovery_tag(parsed, self._recovery)
            return
        old = self._old_token_entry(parsed.entries)
        tag = old.tag if old is not None else parsed.index_tag
        if tag is None:
            if seals_publicly(parsed.key_id):
                raise self._unreadable(
                    "it has no index tag, which every store sealed with the token's public key "
                    "carries: it was not written by vaultd with this token (forged?)"
                )
            return
        if self._authenticator is None:
            raise self._unreadable("it carries an index tag that this key cannot check")
        digest = _tag_digest(
            parsed.key_id,
            parsed.generation,
            parsed.index,
            builtins.list(parsed.records.values()),
            parsed.entries,
        )
        try:
            self._authenticator.mac_verify(digest, tag)
        except AuditTampered:
            raise self._unreadable(
                "its index tag by the token's audit key does not match its records: it was "
                "not written by vaultd with this token (forged, or records edited)"
            ) from None

    def _old_token_entry(self, entries: tuple[_Entry, ...] | None) -> _Entry | None:
        """This store's token's entry if it is the old token of a store moved to another."""
        mine = self._wrapper.key_id
        return next((e for e in entries or () if e.id == mine and e.transitional), None)

    def _refuse_old_token(self, state: _State) -> None:
        """The old token of a moved store reads it but cannot write it (nor tag it)."""
        if self._recovery is None and self._old_token_entry(state.entries) is not None:
            primary = next(e.id for e in state.entries or () if e.public is None and not e.tag)
            raise ConfigError(
                f"store {self.path} has moved to token key {primary} (`vaultd rekey`): this "
                "config's token only reads it; set the [pkcs11] lines `vaultd rekey` printed, "
                "then try again"
            )

    def _find(self, state: _State, kind: RecordKind, name: str) -> _Record:
        try:
            return state.records[(kind, name)]
        except KeyError:
            raise RecordNotFound(f"no {kind} record named {name!r} in {self.path}") from None

    def _open(self, state: _State, record: _Record) -> bytes:
        return unseal(
            state.wrapper,
            record.blob,
            kind=record.kind.value,
            name=record.name,
            generation=state.generation if record.sealed is None else record.sealed,
            context=_context(record.created, record.masked_id, record.root),
        )

    def _backups(self, state: _State) -> builtins.list[Backup]:
        """Each backup's point, K and location, unsealed from the file."""
        backups = []
        for e in state.entries or ():
            if e.public is not None:
                k = unseal(state.wrapper, e.auth, kind=BACKUP_AUTH_KIND, name=e.id, generation=0)
                backups.append(Backup(e.public, k, e.token))
        return backups

    def _snapshot(self, state: _State) -> Snapshot:
        opened = []
        for key in sorted(state.records):
            record = state.records[key]
            try:
                opened.append((record.info(), self._open(state, record)))
            except RecordCorrupt:
                raise RecordCorrupt(
                    f"{record.kind} record {record.name!r} in {self.path} is corrupt, so it "
                    "cannot be re-sealed; remove it (`vaultd remove`) and try again"
                ) from None
        return Snapshot(state.generation, opened, self._backups(state))

    # --- writing --------------------------------------------------------------------------

    def _reseal(self, state: _State, wrapper: KeyWrapper, record: _Record, new: int) -> _Record:
        try:
            plaintext = self._open(state, record)
        except RecordCorrupt:
            log.warning("%s record %r is corrupt; keeping it unchanged", record.kind, record.name)
            return record
        return self._sealed(wrapper, record.info(), plaintext, new)

    def _sealed(
        self, wrapper: KeyWrapper, info: RecordInfo, plaintext: bytes, generation: int
    ) -> _Record:
        record = _Record(
            info.kind, info.name, _rfc3339(info.created), info.masked_id, info.root, b""
        )
        blob = seal(
            wrapper,
            plaintext,
            kind=record.kind.value,
            name=record.name,
            generation=generation,
            context=_context(record.created, record.masked_id, record.root),
        )
        return _Record(
            record.kind, record.name, record.created, record.masked_id, record.root, blob
        )

    def _set_for(self, backups: Sequence[Backup], old: SealingKey | None = None) -> KeyWrapper:
        """The token alone, or the recipient set of the token, the ``old`` token it moves from
        and ``backups``."""
        if not backups and old is None:
            return self._wrapper
        token = TokenRecipient(self._wrapper)
        others: list[Recipient] = [PublicRecovery(b.point, b.kind) for b in backups]
        if old is not None:
            others.append(TokenRecipient(old))
        return RecipientSet([token, *others], token)

    def _write_snapshot(
        self,
        snap: Snapshot,
        backups: Sequence[Backup],
        base: int | None = None,
        old: SealingKey | None = None,
    ) -> None:
        generation = (snap.generation if base is None else base) + 1
        wrapper = self._set_for(backups, old)
        records = [self._sealed(wrapper, info, text, generation) for info, text in snap.records]
        data = self._serialize(generation, records, wrapper, backups, old)
        self._replace_file(data)
        self._anchor.advance_generation(generation)
        if old is not None:
            old.advance_generation(generation)

    def _replace_file(self, data: bytes) -> None:
        """Write the next generation, keeping the previous; bytes written here are authentic."""
        atomic_write(self.path, data, keep_previous=True)
        self._authentic = hashlib.sha256(data).digest()

    def _serialize(
        self,
        generation: int,
        records: builtins.list[_Record],
        wrapper: KeyWrapper | None = None,
        backups: Sequence[Backup] = (),
        old: SealingKey | None = None,
    ) -> bytes:
        wrapper = wrapper or self._wrapper
        records = sorted(records, key=lambda r: r.key)
        index = seal(
            wrapper,
            b"",
            kind=INDEX_KIND,
            name=INDEX_NAME,
            generation=generation,
            context=_index_context([r.key for r in records]),
        )
        key_id = wrapper.key_id
        body: dict[str, object] = {
            "generation": generation,
            "key_id": key_id,
            "index": base64.b64encode(index).decode("ascii"),
            "records": [r.to_json() for r in records],
        }
        entries = self._entries(wrapper, backups, old) if backups or old else None
        digest = _tag_digest(key_id, generation, index, records, entries)
        if entries is not None:
            tags = {b.id: auth_tag(b.auth_key, digest) for b in backups}
            if old is not None:
                tags[old.key_id] = old.mac(digest)
            body["recipients"] = [
                (replace(e, tag=tags[e.id]) if e.id in tags else e).to_json() for e in entries
            ]
        if self._authenticator is not None and seals_publicly(key_id):
            tag = self._authenticator.mac(digest)
            body["index_tag"] = base64.b64encode(tag).decode("ascii")
        header = MAGIC + b" " + str(FORMAT_VERSION).encode() + b"\n"
        return header + json.dumps(body, indent=1, sort_keys=True).encode() + b"\n"

    def _entries(
        self, wrapper: KeyWrapper, backups: Sequence[Backup], old: SealingKey | None
    ) -> tuple[_Entry, ...]:
        """The token, the ``old`` token and each backup with its K sealed to ``wrapper`` (tags
        come later)."""
        entries = [_Entry(self._wrapper.key_id)]
        if old is not None:
            entries.append(_Entry(old.key_id))
        for b in backups:
            auth = seal(wrapper, b.auth_key, kind=BACKUP_AUTH_KIND, name=b.id, generation=0)
            entries.append(_Entry(b.id, b.point, auth, token=b.token))
        return tuple(entries)

    def _write_wrapper(self, state: _State, backups: builtins.list[Backup]) -> KeyWrapper:
        """What a write seals to: the store's set, less the old token of a moved store."""
        if not any(e.transitional for e in state.entries or ()):
            return state.wrapper
        return self._set_for(backups)

    def _commit(
        self,
        state: _State,
        keep: builtins.list[_Record],
        new: _Record | None,
        backups: builtins.list[Backup],
    ) -> None:
        """Write ``keep`` re-sealed and ``new`` to the token and ``backups`` (an old token of
        a moved store is dropped: only it could tag it)."""
        generation = state.generation + 1
        wrapper = self._write_wrapper(state, backups)
        if wrapper is state.wrapper and seals_publicly(wrapper.key_id):
            # Kept as sealed (no open, so no touch per record): the tag binds each record and
            # the generation it was sealed at to this generation.
            records = [
                r if r.sealed is not None else replace(r, sealed=state.generation) for r in keep
            ]
        else:
            records = [self._reseal(state, wrapper, r, generation) for r in keep]
        if new is not None:
            records.append(new)
        data = self._serialize(generation, records, wrapper, backups)
        self._replace_file(data)
        self._anchor.advance_generation(generation)
