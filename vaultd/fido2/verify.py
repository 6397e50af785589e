"""Checking FIDO2 assertions: no device I/O, only bytes in and a verdict (or an error) out.

The approval flow is: :meth:`ChallengeBook.issue` a challenge for an approval id, have the
authenticator sign :func:`client_data_hash` of it, :meth:`ChallengeBook.consume` the challenge,
then :func:`verify_assertion` and persist the returned signCount before releasing anything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
import threading
from collections.abc import Mapping, Sequence
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2 import cbor
from fido2.webauthn import AuthenticatorData

from vaultd.core.ports import Clock, RandomSource
from vaultd.core.records import Fido2CredentialRecord
from vaultd.errors import Fido2Rejected, Fido2Suspect

CHALLENGE_BYTES = 32
CHALLENGE_TTL = 60.0
_MIN_AUTH_DATA = 37  # rpIdHash (32) + flags (1) + signCount (4)


EnrolledCredential = Fido2CredentialRecord
"""An enrolled credential as the verifier sees it: the sealed record's layout, one type."""


def client_data_hash(
    challenge: bytes,
    approval_id: str,
    rp_id: str,
    *,
    kind: Literal["vaultd.approve", "vaultd.enroll"] = "vaultd.approve",
) -> bytes:
    """SHA-256 of vaultd's canonical client data, the value the authenticator signs.

    Like WebAuthn's clientDataJSON: sorted keys, no spaces, ASCII, challenge in base64url.
    """
    client_data = {
        "approvalId": approval_id,
        "challenge": base64.urlsafe_b64encode(challenge).rstrip(b"=").decode(),
        "rpId": rp_id,
        "type": kind,
    }
    encoded = json.dumps(client_data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(encoded.encode()).digest()


class ChallengeBook:
    """Single-use challenges, each bound to one approval id and valid for ``ttl`` seconds."""

    def __init__(self, clock: Clock, random: RandomSource, *, ttl: float = CHALLENGE_TTL) -> None:
        self._clock = clock
        self._random = random
        self._ttl = ttl
        self._open: dict[bytes, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def issue(self, approval_id: str) -> bytes:
        """A fresh 32-byte challenge for ``approval_id``."""
        challenge = self._random.random(CHALLENGE_BYTES)
        now = self._clock.monotonic()
        with self._lock:
            self._open = {c: v for c, v in self._open.items() if now - v[1] <= self._ttl}
            self._open[challenge] = (approval_id, now)
        return challenge

    def consume(self, challenge: bytes, approval_id: str) -> None:
        """Use up ``challenge``; raise ``Fido2Rejected(check="challenge")`` if it is unknown,
        already used, stale or issued for another approval (any attempt uses it up)."""
        with self._lock:
            entry = self._open.pop(challenge, None)
        if entry is None:
            raise Fido2Rejected(
                "the FIDO2 challenge is unknown or already used; start the approval again",
                check="challenge",
            )
        owner, issued = entry
        if not hmac.compare_digest(owner.encode(), approval_id.encode()):
            raise Fido2Rejected(
                "the FIDO2 challenge was issued for another approval; start the approval again",
                check="challenge",
            )
        if self._clock.monotonic() - issued > self._ttl:
            raise Fido2Rejected(
                f"the FIDO2 challenge is older than {self._ttl:.0f} s; start the approval again",
                check="challenge",
            )


def select_credential(
    creds: Sequence[EnrolledCredential], credential_id: bytes
) -> EnrolledCredential:
    """The enrolled credential with ``credential_id``, or ``Fido2Rejected(check="credential")``."""
    for cred in creds:
        if hmac.compare_digest(cred.credential_id, credential_id):
            return cred
    raise Fido2Rejected(
        "the authenticator answered with a credential that is not enrolled; enrol it first",
        check="credential",
    )


def _es256_key(cose_key: bytes) -> ec.EllipticCurvePublicKey:
    try:
        key = cbor.decode(cose_key)
        if not isinstance(key, Mapping) or (key.get(1), key.get(3), key.get(-1)) != (2, -7, 1):
            raise ValueError("not an ES256 P-256 COSE key")
        x, y = key[-2], key[-3]
        if not (isinstance(x, bytes) and isinstance(y, bytes) and len(x) == len(y) == 32):
            raise ValueError("bad coordinates")
        return ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
        ).public_key()
    except (ValueError, IndexError, KeyError, struct.error) as exc:
        raise Fido2Rejected(
            "the enrolled public key is not a valid ES256 key; re-enrol the authenticator",
            check="credential",
        ) from exc


def verify_assertion(
    cred: EnrolledCredential,
    *,
    rp_id: str,
    client_data_hash: bytes,
    auth_data: bytes,
    signature: bytes,
    require_uv: bool,
    allow_zero_counter: bool = False,
) -> int:
    """Check one assertion made by ``cred`` and return its new signCount (persist it).

    Checks, in order: authData parses; rpIdHash matches; UP set; UV set if required; the ES256
    signature over authData || clientDataHash; signCount strictly above the stored one (0 after
    0 only with ``allow_zero_counter``). A failure raises ``Fido2Rejected`` naming the check,
    or ``Fido2Suspect`` for a counter that went back or stood still (mark the credential suspect).
    """
    if cred.suspect:
        raise Fido2Suspect(
            f"FIDO2 credential {cred.name!r} is marked suspect (possible clone); re-enrol it"
        )
    try:
        if len(auth_data) < _MIN_AUTH_DATA:
            raise ValueError("authenticator data too short")
        parsed = AuthenticatorData(auth_data)
    except (ValueError, IndexError, KeyError, TypeError, struct.error) as exc:
        raise Fido2Rejected(
            "the authenticator data is truncated or malformed", check="auth_data"
        ) from exc
    if not hmac.compare_digest(parsed.rp_id_hash, hashlib.sha256(rp_id.encode()).digest()):
        raise Fido2Rejected(
            f"the assertion was made for another RP id than {rp_id!r}", check="rp_id"
        )
    if not parsed.is_user_present():
        raise Fido2Rejected(
            "the authenticator did not confirm a touch; touch it when asked", check="user_present"
        )
    if require_uv and not parsed.is_user_verified():
        raise Fido2Rejected(
            "the authenticator did not verify the user (PIN); this profile requires it",
            check="user_verified",
        )
    try:
        _es256_key(cred.public_key).verify(
            signature, bytes(auth_data) + client_data_hash, ec.ECDSA(hashes.SHA256())
        )
    except InvalidSignature as exc:
        raise Fido2Rejected(
            f"the assertion signature does not verify with credential {cred.name!r}",
            check="signature",
        ) from exc
    count = int(parsed.counter)
    if count > cred.sign_count or (allow_zero_counter and count == cred.sign_count == 0):
        return count
    raise Fido2Suspect(
        f"FIDO2 credential {cred.name!r} signCount {count} is not above the stored "
        f"{cred.sign_count}: the authenticator may be cloned; mark it suspect and re-enrol it"
    )
