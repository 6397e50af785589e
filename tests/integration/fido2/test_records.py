"""The sealed FIDO2 credential record: round trip through EnrolledCredential, strict decoding."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from vaultd.core.records import decode_fido2_credential, encode_fido2_credential
from vaultd.errors import RecordCorrupt
from vaultd.fido2.verify import EnrolledCredential

CRED = EnrolledCredential(
    name="desk",
    credential_id=bytes(range(32)),
    public_key=b"\xa5\x01\x02",
    sign_count=41,
    created=datetime(2026, 1, 1, tzinfo=UTC),
    suspect=True,
    last_used=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    hmac_secret=True,
)


def test_round_trip() -> None:
    rec = decode_fido2_credential(encode_fido2_credential(CRED), name="desk")
    assert EnrolledCredential(**{f: getattr(rec, f) for f in CRED.__slots__}) == CRED


@pytest.mark.parametrize(
    "change",
    [
        {"sign_count": -1},
        {"sign_count": 2**32},
        {"sign_count": True},
        {"suspect": 1},
        {"name": "other"},
        {"v": 2},
        {"credential_id": "not base64!"},
        {"credential_id": ""},
        {"created": "2026-01-01T00:00:00"},  # no offset
        {"last_used": 5},
        {"extra": 1},
    ],
)
def test_strict_decoding(change: dict[str, object]) -> None:
    obj = json.loads(encode_fido2_credential(CRED)) | change
    with pytest.raises(RecordCorrupt, match="vaultd fido2 remove desk"):
        decode_fido2_credential(json.dumps(obj).encode(), name="desk")


def test_garbage_is_corrupt() -> None:
    for blob in (b"", b"\xff", b"[]", b"null"):
        with pytest.raises(RecordCorrupt):
            decode_fido2_credential(blob, name="desk")
