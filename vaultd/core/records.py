"""Plaintext layouts of sealed records (pure; the envelope seals these bytes)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import parse_qsl, urlsplit

from vaultd.core.model import LongTermCredentials, utc
from vaultd.errors import BadRequest, RecordCorrupt

ACCESS_KEY_ID_RE = re.compile(r"^AKIA[A-Z0-9]{12,124}$")
SECRET_KEY_RE = re.compile(r"^[A-Za-z0-9/+=]{16,128}$")


CREATE_ACCESS_KEY_FIELDS = frozenset(
    {"UserName", "AccessKeyId", "Status", "SecretAccessKey", "CreateDate"}
)
"""The fields of the ``AccessKey`` object that ``aws iam create-access-key`` prints."""


def parse_key_pair_input(text: str, *, root: bool) -> LongTermCredentials:
    """Parse a key pair as piped by a user.

    Takes ``{"AccessKeyId": ..., "SecretAccessKey": ...}`` or the output of ``aws iam
    create-access-key`` (``{"AccessKey": {...}}``).  Errors name the field but never echo the
    secret.
    """
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        raise BadRequest(
            'stdin is not JSON: pipe {"AccessKeyId": "...", "SecretAccessKey": "..."} or the '
            "output of `aws iam create-access-key`"
        ) from None
    if not isinstance(obj, dict):
        raise BadRequest("stdin must hold one JSON object with AccessKeyId and SecretAccessKey")
    allowed = {"AccessKeyId", "SecretAccessKey"}
    if set(obj) == {"AccessKey"}:
        obj, allowed = obj["AccessKey"], set(CREATE_ACCESS_KEY_FIELDS)
        if not isinstance(obj, dict):
            raise BadRequest("AccessKey must be the object `aws iam create-access-key` prints")
    unknown = set(obj) - allowed
    if unknown:
        raise BadRequest(f"unknown field(s) {sorted(unknown)}: only {', '.join(sorted(allowed))}")
    return make_key_pair(obj.get("AccessKeyId"), obj.get("SecretAccessKey"), root=root)


def check_access_key_id(value: object) -> str:
    """``value`` if it is a long-lived key id (AKIA...; ASIA ids are temporary)."""
    if not isinstance(value, str) or not ACCESS_KEY_ID_RE.match(value):
        raise BadRequest(
            "AccessKeyId must be a long-lived key id (AKIA followed by 12-124 capitals or digits)"
        )
    return value


def check_secret_access_key(value: object) -> str:
    """``value`` if it has the shape of a secret access key (never echoed)."""
    if not isinstance(value, str) or not SECRET_KEY_RE.match(value):
        raise BadRequest("SecretAccessKey must be 16-128 characters of [A-Za-z0-9/+=]")
    return value


def make_key_pair(access_key_id: object, secret: object, *, root: bool) -> LongTermCredentials:
    """Validate a long-lived key pair (AKIA... ids only: ASIA ids are temporary)."""
    return LongTermCredentials(
        check_access_key_id(access_key_id), check_secret_access_key(secret), root=root
    )


def encode_key_pair(creds: LongTermCredentials) -> bytes:
    """The sealed plaintext of a key pair."""
    return json.dumps(
        {"AccessKeyId": creds.access_key_id, "SecretAccessKey": creds.secret_access_key},
        separators=(",", ":"),
    ).encode()


def decode_key_pair(plaintext: bytes, *, root: bool) -> LongTermCredentials:
    """Inverse of :func:`encode_key_pair`; a malformed record raises ``RecordCorrupt``."""
    try:
        obj = json.loads(plaintext)
        return make_key_pair(obj["AccessKeyId"], obj["SecretAccessKey"], root=root)
    except (ValueError, KeyError, TypeError, RecursionError, BadRequest):
        raise RecordCorrupt(
            "a stored key pair does not parse: restore it with `vaultd add`"
        ) from None


# --- FIDO2 credentials -------------------------------------------------------------------

FIDO2_RECORD_VERSION = 1
_FIDO2_KEYS = frozenset(
    {
        "v",
        "name",
        "credential_id",
        "public_key",
        "sign_count",
        "created",
        "last_used",
        "suspect",
        "hmac_secret",
    }
)
_MAX_CREDENTIAL_ID = 1023
_MAX_PUBLIC_KEY = 1024
_MAX_SIGN_COUNT = 2**32 - 1


@dataclass(frozen=True, slots=True)
class Fido2CredentialRecord:
    """An enrolled authenticator credential: public facts only, never a secret.

    ``public_key`` is the CBOR-encoded COSE ES256 key. ``suspect`` is set (by the caller) once a
    signCount went back or stood still; a suspect credential is refused until re-enrolled.
    """

    name: str
    credential_id: bytes
    public_key: bytes
    sign_count: int
    created: datetime
    suspect: bool = False
    last_used: datetime | None = None
    hmac_secret: bool = False


def _time_text(dt: datetime) -> str:
    return utc(dt).isoformat().replace("+00:00", "Z")


def _time_value(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError("a time is not a string")
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        raise ValueError("a time has no UTC offset")
    return utc(dt)


def _bytes_value(value: object, limit: int) -> bytes:
    if not isinstance(value, str):
        raise ValueError("not base64 text")
    raw = base64.b64decode(value, validate=True)
    if not 0 < len(raw) <= limit:
        raise ValueError("bad length")
    return raw


def encode_fido2_credential(cred: Fido2CredentialRecord) -> bytes:
    """The sealed plaintext of an enrolled FIDO2 credential."""
    return json.dumps(
        {
            "v": FIDO2_RECORD_VERSION,
            "name": cred.name,
            "credential_id": base64.b64encode(cred.credential_id).decode(),
            "public_key": base64.b64encode(cred.public_key).decode(),
            "sign_count": cred.sign_count,
            "created": _time_text(cred.created),
            "last_used": None if cred.last_used is None else _time_text(cred.last_used),
            "suspect": cred.suspect,
            "hmac_secret": cred.hmac_secret,
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


def decode_fido2_credential(plaintext: bytes, *, name: str) -> Fido2CredentialRecord:
    """Inverse of :func:`encode_fido2_credential` for the record stored as ``name``.

    Anything but the exact v1 layout, or a name that differs from ``name``, is ``RecordCorrupt``.
    """
    try:
        obj = json.loads(plaintext)
        if not isinstance(obj, dict) or set(obj) != _FIDO2_KEYS or obj["v"] != FIDO2_RECORD_VERSION:
            raise ValueError("not a v1 FIDO2 credential record")
        count, flags = obj["sign_count"], (obj["suspect"], obj["hmac_secret"])
        if type(count) is not int or not 0 <= count <= _MAX_SIGN_COUNT:
            raise ValueError("bad sign count")
        if not all(isinstance(f, bool) for f in flags) or obj["name"] != name:
            raise ValueError("bad flags or name")
        last = obj["last_used"]
        return Fido2CredentialRecord(
            name=name,
            credential_id=_bytes_value(obj["credential_id"], _MAX_CREDENTIAL_ID),
            public_key=_bytes_value(obj["public_key"], _MAX_PUBLIC_KEY),
            sign_count=count,
            created=_time_value(obj["created"]),
            suspect=obj["suspect"],
            last_used=None if last is None else _time_value(last),
            hmac_secret=obj["hmac_secret"],
        )
    except (ValueError, TypeError, RecursionError, binascii.Error):
        raise RecordCorrupt(
            f"the stored FIDO2 credential {name!r} does not parse: remove it with "
            f"`vaultd fido2 remove {name}` and enrol the authenticator again"
        ) from None


# --- AWS virtual MFA seeds -----------------------------------------------------------------

TOTP_RECORD_VERSION = 1
TOTP_DIGITS = 6
TOTP_PERIOD = 30
TOTP_ALGORITHM = "SHA1"
MFA_SERIAL_RE = re.compile(r"^[\w+=/:,.@-]{9,256}$", re.ASCII)
_TOTP_KEYS = frozenset({"v", "serial", "secret", "digits", "period", "algorithm"})
_BASE32_RE = re.compile(r"^[A-Z2-7]+=*$")
_MIN_SEED_BYTES = 16  # RFC 4226 R6: at least 128 bits
_MAX_SEED_BYTES = 128
_AWS_ONLY = "AWS virtual MFA devices use SHA1, 6 digits and 30-second steps only"


@dataclass(frozen=True, slots=True, eq=False)
class TotpSeed:
    """An AWS virtual MFA seed: the raw key in a ``bytearray`` (call :meth:`wipe` after use)."""

    serial: str
    key: bytearray = field(repr=False)
    digits: int = TOTP_DIGITS
    period: int = TOTP_PERIOD
    algorithm: str = TOTP_ALGORITHM

    def wipe(self) -> None:
        """Overwrite the key bytes with zeros."""
        self.key[:] = bytes(len(self.key))


def check_mfa_serial(serial: str) -> str:
    """``serial`` if it is an AWS MFA SerialNumber (9-256 of ``[\\w+=/:,.@-]``)."""
    if not MFA_SERIAL_RE.match(serial):
        raise BadRequest(
            "the MFA serial must be the device ARN or hardware serial: 9-256 characters of "
            "A-Z a-z 0-9 and + = / : , . @ _ -"
        )
    return serial


def seed_record_name(serial: str) -> str:
    """The path-safe store name of the seed for ``serial`` (a SHA-256 prefix)."""
    return "totp-" + hashlib.sha256(check_mfa_serial(serial).encode()).hexdigest()[:40]


def _base32_key(text: str) -> bytearray:
    cleaned = "".join(text.split()).upper()
    if not _BASE32_RE.match(cleaned):
        raise BadRequest("the TOTP seed is not base32 (letters A-Z and digits 2-7)")
    body = cleaned.rstrip("=")
    try:
        key = bytearray(base64.b32decode(body + "=" * (-len(body) % 8)))
    except binascii.Error:
        raise BadRequest("the TOTP seed is not valid base32 (wrong length)") from None
    if not _MIN_SEED_BYTES <= len(key) <= _MAX_SEED_BYTES:
        size = len(key)
        key[:] = bytes(size)
        raise BadRequest(
            f"the TOTP seed decodes to {size} bytes; an AWS seed has 16-128 "
            "(paste the whole secret)"
        )
    return key


def _otpauth_key(uri: str) -> bytearray:
    parts = urlsplit(uri)
    if parts.netloc.lower() != "totp":
        raise BadRequest(f"only otpauth://totp/ URIs are accepted: {_AWS_ONLY}")
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise BadRequest("the otpauth URI's query string is malformed") from None
    params: dict[str, str] = {}
    for key, value in pairs:
        if key.lower() in params:
            raise BadRequest(f"the otpauth URI repeats the parameter {key.lower()!r}")
        params[key.lower()] = value
    if params.get("algorithm", TOTP_ALGORITHM).upper() != TOTP_ALGORITHM:
        raise BadRequest(f"the otpauth URI asks for another algorithm than SHA1: {_AWS_ONLY}")
    if params.get("digits", str(TOTP_DIGITS)) != str(TOTP_DIGITS):
        raise BadRequest(f"the otpauth URI asks for another number of digits: {_AWS_ONLY}")
    if params.get("period", str(TOTP_PERIOD)) != str(TOTP_PERIOD):
        raise BadRequest(f"the otpauth URI asks for another period: {_AWS_ONLY}")
    if "secret" not in params:
        raise BadRequest("the otpauth URI has no secret parameter")
    return _base32_key(params["secret"])


def parse_totp_input(text: str, *, serial: str) -> TotpSeed:
    """A seed from a base32 secret or an ``otpauth://totp/...`` URI, as typed or piped.

    Only SHA1, 6 digits and 30 s are accepted. Errors never echo the input.
    """
    check_mfa_serial(serial)
    stripped = text.strip()
    if stripped.lower().startswith("otpauth:"):
        return TotpSeed(serial, _otpauth_key(stripped))
    if "://" in stripped:
        raise BadRequest("the seed must be base32 text or an otpauth://totp/ URI")
    return TotpSeed(serial, _base32_key(stripped))


def encode_totp_seed(seed: TotpSeed) -> bytes:
    """The sealed plaintext of a seed (the key as unpadded base32)."""
    secret = base64.b32encode(seed.key).decode().rstrip("=")
    return json.dumps(
        {
            "v": TOTP_RECORD_VERSION,
            "serial": seed.serial,
            "secret": secret,
            "digits": seed.digits,
            "period": seed.period,
            "algorithm": seed.algorithm,
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


def decode_totp_seed(plaintext: bytes, *, name: str) -> TotpSeed:
    """Inverse of :func:`encode_totp_seed` for the record stored as ``name``.

    The serial inside must derive ``name``; anything else is ``RecordCorrupt``.
    """
    try:
        obj = json.loads(plaintext)
        if not isinstance(obj, dict) or set(obj) != _TOTP_KEYS or obj["v"] != TOTP_RECORD_VERSION:
            raise ValueError("not a v1 seed record")
        serial, secret = obj["serial"], obj["secret"]
        fixed = (obj["digits"], obj["period"], obj["algorithm"])
        if fixed != (TOTP_DIGITS, TOTP_PERIOD, TOTP_ALGORITHM) or not isinstance(secret, str):
            raise ValueError("unsupported parameters")
        if not isinstance(serial, str) or seed_record_name(serial) != name:
            raise ValueError("the serial does not match the record name")
        return TotpSeed(serial, _base32_key(secret))
    except (ValueError, TypeError, RecursionError, BadRequest):
        raise RecordCorrupt(
            "a stored MFA seed does not parse: remove it with `vaultd mfa remove SERIAL` and "
            "add it again"
        ) from None
