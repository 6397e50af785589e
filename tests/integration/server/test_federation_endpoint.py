"""getSigninToken against the local stand-in (see conftest) and against failing endpoints."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from vaultd.aws.federation import get_signin_token
from vaultd.core.model import SessionCredentials
from vaultd.errors import FederationFailed

from .conftest import FederationStandIn

CREDS = SessionCredentials(
    "ASIAROLESESSION00001",
    "RoleSessionSecret0000000000000000000001",
    "RoleSessionToken+/=0001",
    datetime(2030, 1, 1, tzinfo=UTC),
)


def test_round_trip_through_the_stand_in(federation: FederationStandIn) -> None:
    assert get_signin_token(federation.url, CREDS, 900) == "signin-token-1"
    assert get_signin_token(federation.url, CREDS) == "signin-token-2"
    expected = {
        "sessionId": CREDS.access_key_id,
        "sessionKey": CREDS.secret_access_key,
        "sessionToken": CREDS.session_token,
    }
    assert federation.sessions == [expected, expected]
    assert federation.durations == ["900", None]


@pytest.fixture
def answering() -> Iterator[list[tuple[int, bytes]]]:
    """A server whose next replies the test scripts as (status, body)."""
    script: list[tuple[int, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            status, body = script.pop(0)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with HTTPServer(("127.0.0.1", 0), Handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        script.append((0, f"http://127.0.0.1:{httpd.server_address[1]}/federation".encode()))
        yield script
        httpd.shutdown()
        thread.join()


def url_of(script: list[tuple[int, bytes]]) -> str:
    return script.pop(0)[1].decode()


@pytest.mark.parametrize(
    ("status", "body", "match"),
    [
        (400, b"Session credentials are not valid", "HTTP 400"),
        (200, b"<html>sign in</html>", "without a SigninToken"),
        (200, b'{"SigninToken": "' + b"x" * 70_000 + b'"}', "oversized"),
    ],
    ids=["refused", "not-json", "oversized"],
)
def test_endpoint_failures_name_no_secret(
    answering: list[tuple[int, bytes]], status: int, body: bytes, match: str
) -> None:
    url = url_of(answering)
    answering.append((status, body))
    with pytest.raises(FederationFailed, match=match) as info:
        get_signin_token(url, CREDS)
    text = str(info.value)
    for secret in (CREDS.secret_access_key, CREDS.session_token, "Session="):
        assert secret not in text


def test_unreachable_endpoint() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(FederationFailed, match="cannot reach"):
        get_signin_token(f"http://127.0.0.1:{port}/federation", CREDS, timeout=2)
