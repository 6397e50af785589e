"""Plaintext layouts of sealed records (pure; the envelope seals these bytes)."""

from __future__ import annotations

import json
import re

from vaultd.core.model import LongTermCredentials
from vaultd.errors import BadRequest, RecordCorrupt

ACCESS_KEY_ID_RE = re.compile(r"^AKIA[A-Z0-9]{12,124}$")
SECRET_KEY_RE = re.compile(r"^[A-Za-z0-9/+=]{16,128}$")


def parse_key_pair_input(text: str, *, root: bool) -> LongTermCredentials:
    """Parse ``{"AccessKeyId": ..., "SecretAccessKey": ...}`` as typed or piped by a user.

    Errors name the field but never echo the secret.
    """
    try:
        obj = json.loads(text)
    except ValueError:
        raise BadRequest(
            'stdin is not JSON: pipe {"AccessKeyId": "...", "SecretAccessKey": "..."}'
        ) from None
    if not isinstance(obj, dict):
        raise BadRequest("stdin must hold one JSON object with AccessKeyId and SecretAccessKey")
    unknown = set(obj) - {"AccessKeyId", "SecretAccessKey"}
    if unknown:
        raise BadRequest(f"unknown field(s) {sorted(unknown)}: only AccessKeyId, SecretAccessKey")
    return make_key_pair(obj.get("AccessKeyId"), obj.get("SecretAccessKey"), root=root)


def make_key_pair(access_key_id: object, secret: object, *, root: bool) -> LongTermCredentials:
    """Validate a long-lived key pair (AKIA... ids only: ASIA ids are temporary)."""
    if not isinstance(access_key_id, str) or not ACCESS_KEY_ID_RE.match(access_key_id):
        raise BadRequest(
            "AccessKeyId must be a long-lived key id (AKIA followed by 12-124 capitals or digits)"
        )
    if not isinstance(secret, str) or not SECRET_KEY_RE.match(secret):
        raise BadRequest("SecretAccessKey must be 16-128 characters of [A-Za-z0-9/+=]")
    return LongTermCredentials(access_key_id, secret, root=root)


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
    except (ValueError, KeyError, TypeError, BadRequest):
        raise RecordCorrupt(
            "a stored key pair does not parse: restore it with `vaultd add`"
        ) from None
