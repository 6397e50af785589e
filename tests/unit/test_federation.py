"""Console sign-in URLs: endpoint choice, the getSigninToken request, the login URL (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from vaultd.aws import federation
from vaultd.core.model import SessionCredentials
from vaultd.errors import ConfigError, FederationFailed

CREDS = SessionCredentials(
    "ASIAEXAMPLE000000001",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "FwoGZXIvYXdzE+token/with=chars&more",
    datetime(2026, 1, 1, 12, tzinfo=UTC),
)


def test_default_endpoint_is_aws() -> None:
    assert federation.endpoint({}) == "https://signin.aws.amazon.com/federation"
    assert federation.endpoint({"VAULTD_FEDERATION_URL": ""}) == federation.DEFAULT_ENDPOINT


@pytest.mark.parametrize(
    "url",
    [
        "https://signin.amazonaws-us-gov.com/federation",
        "http://127.0.0.1:8080/federation",
        "http://localhost:1/federation",
        "http://[::1]:9/federation",
    ],
)
def test_endpoint_override_accepted(url: str) -> None:
    assert federation.endpoint({"VAULTD_FEDERATION_URL": url}) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://signin.aws.amazon.com/federation",
        "http://10.0.0.1/federation",
        "ftp://127.0.0.1/federation",
        "file:///etc/passwd",
        "https://signin.aws.amazon.com/federation?Action=x",
        "https://user:pw@signin.aws.amazon.com/federation",
        "https:///federation",
        "signin.aws.amazon.com",
    ],
)
def test_endpoint_override_refused(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        federation.endpoint({"VAULTD_FEDERATION_URL": url})
    assert "VAULTD_FEDERATION_URL" in str(info.value)


def test_signin_token_request_carries_the_session_json() -> None:
    url = federation.signin_token_url("https://signin.aws.amazon.com/federation", CREDS)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https",
        "signin.aws.amazon.com",
        "/federation",
    )
    query = parse_qs(parts.query, strict_parsing=True)
    assert set(query) == {"Action", "Session"}
    assert query["Action"] == ["getSigninToken"]
    assert json.loads(query["Session"][0]) == {
        "sessionId": CREDS.access_key_id,
        "sessionKey": CREDS.secret_access_key,
        "sessionToken": CREDS.session_token,
    }


def test_session_duration_is_checked_and_sent() -> None:
    url = federation.signin_token_url("https://h/federation", CREDS, 43_200)
    assert parse_qs(urlsplit(url).query)["SessionDuration"] == ["43200"]
    for bad in (899, 43_201, 0):
        with pytest.raises(ConfigError, match="900-43200"):
            federation.signin_token_url("https://h/federation", CREDS, bad)


def test_login_url_is_exact() -> None:
    url = federation.login_url("https://signin.aws.amazon.com/federation", "tok+/=en")
    assert url == (
        "https://signin.aws.amazon.com/federation?Action=login&Issuer=vaultd"
        "&Destination=https%3A%2F%2Fconsole.aws.amazon.com%2F&SigninToken=tok%2B%2F%3Den"
    )


def test_parse_signin_token() -> None:
    assert federation.parse_signin_token(b'{"SigninToken": "abc"}') == "abc"
    for body in (b"", b"<html>", b"[]", b'{"SigninToken": ""}', b'{"SigninToken": 1}', b"{}"):
        with pytest.raises(FederationFailed, match="SigninToken"):
            federation.parse_signin_token(body)
