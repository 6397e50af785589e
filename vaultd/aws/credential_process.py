"""The ``credential_process`` output: one Version 1 JSON object, built in the daemon.

See THREATS §5: ``Version`` is the integer 1 and ``Expiration`` is always RFC 3339 UTC with ``Z``
and no fractional seconds, so every SDK refreshes the credentials in time.
"""

from __future__ import annotations

import json
from datetime import UTC

from vaultd.core.model import SessionCredentials

EXPIRATION_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def render(creds: SessionCredentials) -> bytes:
    """Return the exact stdout bytes for ``creds``: compact, ASCII, no trailing newline.

    Fractional seconds of the expiration are dropped (rounded down, never later).
    """
    document = {
        "Version": 1,
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key,
        "SessionToken": creds.session_token,
        "Expiration": creds.expiration.astimezone(UTC).strftime(EXPIRATION_FORMAT),
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=True).encode("ascii")
