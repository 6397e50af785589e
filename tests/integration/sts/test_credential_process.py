"""credential_process output against the golden vectors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from vaultd.aws.credential_process import render
from vaultd.core.model import SessionCredentials

pytestmark = pytest.mark.sts

VECTORS = json.loads(
    (Path(__file__).parents[2] / "vectors" / "credential_process.json").read_text("utf-8")
)["cases"]


@pytest.mark.parametrize("case", VECTORS, ids=[c["name"] for c in VECTORS])
def test_render_matches_vector(case: dict[str, Any]) -> None:
    given = case["input"]
    creds = SessionCredentials(
        given["access_key_id"],
        given["secret_access_key"],
        given["session_token"],
        datetime.fromisoformat(given["expiration"]),
    )
    out = render(creds)
    assert out == case["output"].encode("ascii")
    assert out.isascii()


def test_output_is_one_version_1_object() -> None:
    creds = SessionCredentials("ASIAX", "s", "t", datetime(2030, 5, 6, 7, 8, 9, 123, tzinfo=UTC))
    document = json.loads(render(creds))
    assert list(document) == [
        "Version",
        "AccessKeyId",
        "SecretAccessKey",
        "SessionToken",
        "Expiration",
    ]
    assert document["Version"] == 1 and type(document["Version"]) is int
    assert document["Expiration"] == "2030-05-06T07:08:09Z"
