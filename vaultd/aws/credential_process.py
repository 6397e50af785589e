"""The ``credential_process`` output: one Version 1 JSON object, built in the daemon.

See docs/threat-model.md AWS contract: ``Version`` is the integer 1 and ``Expiration`` is always RFC
3339 UTC with ``Z`` and no fractional seconds, so every SDK refreshes the credentials in time.  Only
session credentials are rendered (docs/threat-model.md T28): anything without a session token and an
expiration is refused, so a long-term key pair can never be served through this document.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from vaultd.core.model import SessionCredentials
from vaultd.errors import ReplySchemaViolation

EXPIRATION_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)


def render(creds: SessionCredentials) -> bytes:
    """Return the exact stdout bytes for ``creds``: compact, ASCII, no trailing newline.

    Fractional seconds of the expiration are dropped (rounded down, never later).  Raises
    ``ReplySchemaViolation`` for credentials without a session token or an expiration.
    """
    token: object = getattr(creds, "session_token", None)
    expiration: object = getattr(creds, "expiration", None)
    if not isinstance(token, str) or not token or not isinstance(expiration, datetime):
        raise ReplySchemaViolation(
            "refused to render credentials without a session token and an expiration: only "
            "STS session credentials are ever served"
        )
    document = {
        "Version": 1,
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key,
        "SessionToken": token,
        "Expiration": expiration.astimezone(UTC).strftime(EXPIRATION_FORMAT),
    }
    return _ENCODER.encode(document).encode("ascii")
