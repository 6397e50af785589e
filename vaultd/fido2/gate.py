"""The FIDO2 touch gate, the store records behind it, and hmac-secret record binding.

:class:`TouchGate` runs one approval: a challenge bound to the approval id, a touch on any
present authenticator holding an enrolled credential, the checks of docs/threat-model.md T13, and
the new signCount saved before it returns. It blocks; the daemon runs it in a thread.

**hmac-secret binding** (``bind_plaintext``/``unbind_plaintext``). A bound record's plaintext is
first encrypted in software with a random 256-bit data key (AES-256-GCM), and the result is then
sealed by the token as usual. The data key is wrapped once per bound authenticator under
``HKDF-SHA256(hmac-secret output, salt, info)``, where the hmac-secret output is the 32 bytes
that authenticator's credential returns, after a touch, for the record's random 32-byte salt
(stored in the clear in the blob). Opening a bound record therefore needs the token *and* a
touch on one bound authenticator: the touch is enforced by cryptography, not only by a check in
code. Outputs are taken without user verification (v1); with UV they would differ.

Trade-off: the data key exists only wrapped under the bound authenticators' outputs. Lose or
reset every bound authenticator and the record cannot be opened by anyone, token or not: bind
at least two authenticators, and keep a way to re-create the secret (for AWS keys, a new
access key from the console).

Blob v1 (all lengths checked before slicing; any failure is ``RecordCorrupt``)::

    MAGIC(8) | salt(32) | n(1) | n x [id_len(2) | credential_id | nonce(12) | wrapped_key(48)]
    | nonce(12) | ciphertext || tag(16)

The body's AAD is every byte before its nonce; each wrap's AAD is MAGIC | salt | credential_id.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import secrets
import struct
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fido2.ctap import CtapDevice

from vaultd.core.model import RecordKind
from vaultd.core.ports import Clock, RandomSource
from vaultd.core.records import decode_fido2_credential, encode_fido2_credential
from vaultd.errors import (
    ApprovalUnavailable,
    AuditError,
    ConfigError,
    Fido2Rejected,
    Fido2Suspect,
    RecordCorrupt,
)
from vaultd.fido2.ceremony import assert_presence
from vaultd.fido2.verify import (
    ChallengeBook,
    EnrolledCredential,
    client_data_hash,
    verify_assertion,
)

log = logging.getLogger(__name__)

Audit = Callable[[str, Mapping[str, object]], None]
"""Writes and fsyncs one audit record (``AuditLog.record``); raises ``AuditError``."""


class CredentialStore(Protocol):
    """The part of :class:`vaultd.store.files.SealedStore` the credential helpers use."""

    def get(self, kind: RecordKind, name: str) -> bytes: ...

    def names(self, kind: RecordKind) -> list[str]: ...

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
    ) -> None: ...


# --- credential records ------------------------------------------------------------------


def load_enrolled(store: CredentialStore) -> list[EnrolledCredential]:
    """Every enrolled FIDO2 credential in ``store``, by name."""
    return [
        decode_fido2_credential(store.get(RecordKind.FIDO2_CREDENTIAL, name), name=name)
        for name in store.names(RecordKind.FIDO2_CREDENTIAL)
    ]


def save_enrolled(store: CredentialStore, cred: EnrolledCredential, *, new: bool = False) -> None:
    """Store ``cred`` under its name; with ``new``, refuse (``RecordExists``) if present.

    An update (signCount, last use, suspect) keeps the record's enrolment time.
    """
    store.put(
        RecordKind.FIDO2_CREDENTIAL,
        cred.name,
        encode_fido2_credential(cred),
        replace=not new,
        keep_created=not new,
    )


def _fingerprint(cred: EnrolledCredential) -> str:
    return hashlib.sha256(cred.credential_id).hexdigest()[:16]


# --- the gate ----------------------------------------------------------------------------


class TouchGate:
    """Touch-to-approve with the enrolled FIDO2 credentials (docs/threat-model.md T13).

    ``devices_factory()`` opens the authenticators present now; ``load_credentials()`` and
    ``save_credential(cred)`` read and persist enrolled credentials (blocking, token access).
    """

    def __init__(
        self,
        devices_factory: Callable[[], Sequence[CtapDevice]],
        load_credentials: Callable[[], Sequence[EnrolledCredential]],
        save_credential: Callable[[EnrolledCredential], None],
        clock: Clock,
        random: RandomSource,
        rp_id: str,
        audit: Audit,
        *,
        allow_zero_counter: bool = False,
    ) -> None:
        self._devices = devices_factory
        self._load = load_credentials
        self._save = save_credential
        self._clock = clock
        self._rp_id = rp_id
        self._audit = audit
        self._allow_zero = allow_zero_counter
        self._challenges = ChallengeBook(clock, random)

    def approve(
        self,
        approval_id: str,
        *,
        require_uv: bool = False,
        pin: str | None = None,
        on_prompt: Callable[[], None],
        cancel: threading.Event,
        timeout: float,
    ) -> EnrolledCredential:
        """One touch for ``approval_id``; returns the credential with its new signCount saved.

        Raises ``ApprovalUnavailable`` (nothing enrolled, or no enrolled key present),
        ``Denied``/``ApprovalTimeout`` (refused, cancelled, not touched), ``Fido2Rejected``
        (a failed check) or ``Fido2Suspect`` (the credential is now marked suspect).
        """
        cred, _ = self._touch(
            approval_id,
            self._usable(None),
            require_uv=require_uv,
            pin=pin,
            on_prompt=on_prompt,
            cancel=cancel,
            timeout=timeout,
            salt=None,
        )
        return cred

    def hmac_output(
        self,
        approval_id: str,
        salt: bytes,
        credential_ids: Sequence[bytes],
        *,
        on_prompt: Callable[[], None],
        cancel: threading.Event,
        timeout: float,
    ) -> tuple[bytes, bytes]:
        """A touch on any present authenticator among ``credential_ids``: its id and its
        hmac-secret output for ``salt`` (the ``hmac_output_for`` of :func:`unbind_plaintext`)."""
        wanted = set(credential_ids)
        creds = [c for c in self._usable(None) if c.credential_id in wanted and c.hmac_secret]
        if not creds:
            raise ApprovalUnavailable(
                "no enrolled FIDO2 credential is bound to this record: it cannot be opened"
            )
        cred, output = self._touch(
            approval_id,
            creds,
            require_uv=False,
            pin=None,
            on_prompt=on_prompt,
            cancel=cancel,
            timeout=timeout,
            salt=salt,
        )
        assert output is not None  # noqa: S101 - assert_presence returns one when asked
        return cred.credential_id, output

    def hmac_outputs(
        self,
        approval_id: str,
        salt: bytes,
        names: Sequence[str],
        *,
        on_prompt: Callable[[EnrolledCredential], None],
        cancel: threading.Event,
        timeout: float,
    ) -> dict[bytes, bytes]:
        """One touch on each named authenticator, in turn: their hmac-secret outputs for
        ``salt`` by credential id (the ``gate_outputs`` of :func:`bind_plaintext`)."""
        outputs: dict[bytes, bytes] = {}
        for cred in self._usable(names):
            if not cred.hmac_secret:
                raise ApprovalUnavailable(
                    f"FIDO2 credential {cred.name!r} was enrolled without hmac-secret, so it "
                    "cannot bind a record; enrol the key again"
                )
            _, output = self._touch(
                approval_id,
                [cred],
                require_uv=False,
                pin=None,
                on_prompt=functools.partial(on_prompt, cred),
                cancel=cancel,
                timeout=timeout,
                salt=salt,
            )
            assert output is not None  # noqa: S101 - assert_presence returns one when asked
            outputs[cred.credential_id] = output
        return outputs

    # --- internals -------------------------------------------------------------------------

    def _usable(self, names: Sequence[str] | None) -> list[EnrolledCredential]:
        creds = list(self._load())
        if not creds:
            raise ApprovalUnavailable(
                "no FIDO2 authenticator is enrolled: run `vaultd fido2 enroll --name NAME`"
            )
        if names is not None:
            by_name = {c.name: c for c in creds}
            missing = sorted(set(names) - set(by_name))
            if missing:
                raise ApprovalUnavailable(f"no enrolled FIDO2 credential named {missing[0]!r}")
            creds = [by_name[n] for n in names]
            suspect = [c.name for c in creds if c.suspect]
            if suspect:
                raise Fido2Suspect(
                    f"FIDO2 credential {suspect[0]!r} is marked suspect (possible clone): remove "
                    "it with `vaultd fido2 remove NAME` and enrol the key again"
                )
        usable = [c for c in creds if not c.suspect]
        if not usable:
            raise Fido2Suspect(
                "every enrolled FIDO2 credential that could answer is marked suspect (possible "
                "clone): remove it with `vaultd fido2 remove NAME` and enrol the key again"
            )
        return usable

    # Long: the challenge is used up on every exit path, success or failure, in one place.
    def _touch(
        self,
        approval_id: str,
        creds: Sequence[EnrolledCredential],
        *,
        require_uv: bool,
        pin: str | None,
        on_prompt: Callable[[], None],
        cancel: threading.Event,
        timeout: float,
        salt: bytes | None,
    ) -> tuple[EnrolledCredential, bytes | None]:
        devices = self._devices()
        challenge = self._challenges.issue(approval_id)
        try:
            result = assert_presence(
                devices,
                creds,
                challenge=challenge,
                approval_id=approval_id,
                rp_id=self._rp_id,
                require_uv=require_uv,
                pin=pin,
                on_prompt=on_prompt,
                cancel=cancel,
                timeout=timeout,
                hmac_salt=salt,
            )
        except BaseException:
            with contextlib.suppress(Fido2Rejected):  # a failed attempt uses the challenge up
                self._challenges.consume(challenge, approval_id)
            raise
        finally:
            for device in devices:
                with contextlib.suppress(Exception):
                    device.close()
        cred = result.credential
        try:
            self._challenges.consume(challenge, approval_id)
            count = verify_assertion(
                cred,
                rp_id=self._rp_id,
                client_data_hash=client_data_hash(challenge, approval_id, self._rp_id),
                auth_data=result.auth_data,
                signature=result.signature,
                require_uv=require_uv,
                allow_zero_counter=self._allow_zero,
            )
        except Fido2Suspect:
            self._save(replace(cred, suspect=True))
            self._try_audit("fido2_suspect", approval_id, cred)
            raise
        except Fido2Rejected as exc:
            self._try_audit("fido2_rejected", approval_id, cred, check=exc.check)
            raise
        used = replace(cred, sign_count=count, last_used=self._clock.now())
        self._save(used)  # persisted before anything can be released
        self._audit(
            "fido2_touch",
            {
                "approval": approval_id,
                "credential": cred.name,
                "credential_hash": _fingerprint(cred),
                "sign_count": count,
            },
        )
        return used, result.hmac_output

    def _try_audit(
        self, event: str, approval_id: str, cred: EnrolledCredential, **extra: object
    ) -> None:
        """Audit a refusal; the refusal stands even if the audit log fails."""
        fields: dict[str, object] = {
            "approval": approval_id,
            "credential": cred.name,
            "credential_hash": _fingerprint(cred),
            **extra,
        }
        try:
            self._audit(event, fields)
        except AuditError as exc:
            log.error("%s (while recording %s)", exc, event)


# --- hmac-secret binding -----------------------------------------------------------------

BIND_MAGIC = b"\x00VDBIND\x01"
_SALT = 32
_NONCE = 12
_KEY = 32
_TAG = 16
_WRAPPED = _KEY + _TAG
_MAX_BOUND = 16
_MAX_ID = 1023
_INFO = b"vaultd bind v1 data-key wrap"


def _kek(output: bytes, salt: bytes, credential_id: bytes) -> bytes:
    if len(output) != 32:
        raise ValueError("an hmac-secret output is 32 bytes")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=_KEY, salt=salt, info=_INFO + credential_id)
    return hkdf.derive(output)


def is_bound(plaintext: bytes) -> bool:
    """Whether a sealed record's plaintext is an hmac-secret bound blob."""
    return plaintext.startswith(BIND_MAGIC)


def bind_plaintext(
    plaintext: bytes, gate_outputs: Callable[[bytes], Mapping[bytes, bytes]]
) -> bytes:
    """Encrypt ``plaintext`` so that only a touch on a bound authenticator can open it.

    ``gate_outputs(salt)`` returns, by credential id, each bound authenticator's hmac-secret
    output for the new random ``salt`` (e.g. :meth:`TouchGate.hmac_outputs`). Seal the result
    with the token as usual.
    """
    salt = secrets.token_bytes(_SALT)
    outputs = dict(gate_outputs(salt))
    if not outputs:
        raise ApprovalUnavailable("no authenticator answered, so the record cannot be bound")
    if len(outputs) > _MAX_BOUND:
        raise ConfigError(
            f"a record can be bound to at most {_MAX_BOUND} authenticators, not "
            f"{len(outputs)}: remove spare ones with `vaultd fido2 remove NAME`"
        )
    data_key = bytearray(secrets.token_bytes(_KEY))
    try:
        header = bytearray(BIND_MAGIC + salt + bytes([len(outputs)]))
        for cid, output in outputs.items():
            if not 0 < len(cid) <= _MAX_ID:
                raise ValueError("a credential id is empty or too long")
            nonce = secrets.token_bytes(_NONCE)
            wrap_aad = BIND_MAGIC + salt + cid
            wrapped = AESGCM(_kek(output, salt, cid)).encrypt(nonce, bytes(data_key), wrap_aad)
            header += struct.pack(">H", len(cid)) + cid + nonce + wrapped
        nonce = secrets.token_bytes(_NONCE)
        body = AESGCM(bytes(data_key)).encrypt(nonce, plaintext, bytes(header))
        return bytes(header) + nonce + body
    finally:
        data_key[:] = bytes(_KEY)


def _corrupt(why: str) -> RecordCorrupt:
    return RecordCorrupt(f"the FIDO2-bound record does not open ({why}); add it again")


def _parse_bound(blob: bytes) -> tuple[bytes, dict[bytes, tuple[bytes, bytes]], int]:
    """Salt, wraps by credential id, and the offset of the body nonce."""
    if not is_bound(blob) or len(blob) < len(BIND_MAGIC) + _SALT + 1:
        raise _corrupt("not a bound blob")
    pos = len(BIND_MAGIC)
    salt = blob[pos : pos + _SALT]
    count = blob[pos + _SALT]
    pos += _SALT + 1
    if not 0 < count <= _MAX_BOUND:
        raise _corrupt("bad authenticator count")
    wraps: dict[bytes, tuple[bytes, bytes]] = {}
    for _ in range(count):
        if len(blob) < pos + 2:
            raise _corrupt("truncated")
        (id_len,) = struct.unpack_from(">H", blob, pos)
        end = pos + 2 + id_len + _NONCE + _WRAPPED
        if not 0 < id_len <= _MAX_ID or len(blob) < end:
            raise _corrupt("truncated")
        cid = blob[pos + 2 : pos + 2 + id_len]
        wraps[cid] = (blob[end - _WRAPPED - _NONCE : end - _WRAPPED], blob[end - _WRAPPED : end])
        pos = end
    if len(wraps) != count or len(blob) < pos + _NONCE + _TAG:
        raise _corrupt("truncated or duplicated")
    return salt, wraps, pos


def unbind_plaintext(
    blob: bytes, hmac_output_for: Callable[[bytes, Sequence[bytes]], tuple[bytes, bytes]]
) -> bytes:
    """Open a blob made by :func:`bind_plaintext`.

    ``hmac_output_for(salt, credential_ids)`` touches any present bound authenticator and
    returns its credential id and hmac-secret output (e.g. :meth:`TouchGate.hmac_output`).
    """
    salt, wraps, pos = _parse_bound(blob)
    cid, output = hmac_output_for(salt, list(wraps))
    if cid not in wraps:
        raise _corrupt("the touched authenticator is not bound to it")
    nonce, wrapped = wraps[cid]
    try:
        data_key = bytearray(
            AESGCM(_kek(output, salt, cid)).decrypt(nonce, wrapped, BIND_MAGIC + salt + cid)
        )
    except (InvalidTag, ValueError):
        raise _corrupt("the authenticator's hmac-secret output does not unwrap its key") from None
    try:
        return AESGCM(bytes(data_key)).decrypt(
            blob[pos : pos + _NONCE], blob[pos + _NONCE :], blob[:pos]
        )
    except InvalidTag:
        raise _corrupt("its body failed authentication") from None
    finally:
        data_key[:] = bytes(_KEY)
