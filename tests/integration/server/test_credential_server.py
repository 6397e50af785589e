"""The container-credentials endpoint in-process: HTTP checks, botocore's view, refresh rule.

The session comes from a canned ``fetch`` here (a fake: these checks happen before or apart
from the daemon, which ``test_exec_server.py`` uses for real); the HTTP peer is real botocore
or a raw socket that can send what botocore never would.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from botocore.credentials import ContainerProvider

from vaultd.aws.container_endpoint import (
    PATH,
    CredentialServer,
    SessionSource,
    container_body,
    parse_session,
)
from vaultd.errors import Denied, ProtocolError
from vaultd.testing.clock import DEFAULT_START, FakeClock

KEY_ID = "ASIATESTSESSION00001"
SECRET = "SessionSecret000000000000000000000000001"
TOKEN = "SessionToken/0000000000000000000000000000000001"


def process_json(
    expires_in: float = 3600, key_id: str = KEY_ID, *, start: datetime = DEFAULT_START
) -> bytes:
    expiration = (start + timedelta(seconds=expires_in)).strftime("%Y-%m-%dT%H:%M:%SZ")
    doc = {
        "Version": 1,
        "AccessKeyId": key_id,
        "SecretAccessKey": SECRET,
        "SessionToken": TOKEN,
        "Expiration": expiration,
    }
    return json.dumps(doc).encode()


class CountingFetch:
    def __init__(self, *outputs: bytes, delay: float = 0.0) -> None:
        self.outputs = list(outputs)
        self.calls = 0
        self.delay = delay

    def __call__(self) -> bytes:
        self.calls += 1
        time.sleep(self.delay)
        return self.outputs[min(self.calls, len(self.outputs)) - 1]


@pytest.fixture
def fetch() -> CountingFetch:
    return CountingFetch(process_json(start=datetime.now(UTC)))


@pytest.fixture
def server(fetch: CountingFetch) -> Iterator[CredentialServer]:
    with CredentialServer(fetch) as srv:
        yield srv


def raw(server: CredentialServer, request: str) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` (``{port}``/``{token}`` filled in) and parse the HTTP reply."""
    text = request.format(port=server.port, token=server.token, path=PATH)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(text.encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


GOOD = "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {token}\r\n\r\n"


def test_botocore_container_provider_gets_the_session(
    server: CredentialServer, fetch: CountingFetch
) -> None:
    env = server.environment({"AWS_ACCESS_KEY_ID": "AKIASTALE", "PATH": "/bin"}, "dev")
    creds = ContainerProvider(environ=env).load()
    assert creds is not None
    frozen = creds.get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key, frozen.token) == (KEY_ID, SECRET, TOKEN)
    assert fetch.calls == 1


def test_good_request_gets_the_container_json(server: CredentialServer) -> None:
    status, headers, body = raw(server, GOOD)
    assert status == 200
    assert headers["Cache-Control"] == "no-store"
    doc = json.loads(body)
    assert set(doc) == {"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}
    assert doc["Token"] == TOKEN and doc["Expiration"].endswith("Z")
    localhost = GOOD.replace("127.0.0.1:{port}", "localhost:{port}")
    assert raw(server, localhost)[0] == 200


@pytest.mark.parametrize(
    "request_text",
    [
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n",
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: wrong\r\n\r\n",
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\r\n",
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {token}x\r\n\r\n",
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Authorization: {token}\r\nAuthorization: {token}\r\n\r\n",
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n",
        "GET /etc/passwd HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: \u00e9\r\n\r\n",
    ],
    ids=["missing", "wrong", "bearer-prefix", "longer", "twice", "post-no-token", "other-path"],
)
def test_missing_or_wrong_token_is_401(
    server: CredentialServer, fetch: CountingFetch, request_text: str
) -> None:
    status, _, body = raw(server, request_text)
    assert status == 401
    assert json.loads(body)["Code"] == "UNAUTHORIZED"
    assert server.token.encode() not in body and SECRET.encode() not in body
    assert fetch.calls == 0


@pytest.mark.parametrize(
    "host_lines",
    [
        "Host: evil.example:{port}\r\n",
        "Host: 127.0.0.1\r\n",
        "Host: 127.0.0.1:1\r\n",
        "Host: 127.0.0.1.nip.io:{port}\r\n",
        "",
        "Host: 127.0.0.1:{port}\r\nHost: evil.example:{port}\r\n",
    ],
    ids=["foreign", "no-port", "other-port", "rebinding-name", "absent", "twice"],
)
def test_wrong_host_is_400_even_with_the_token(
    server: CredentialServer, fetch: CountingFetch, host_lines: str
) -> None:
    request = "GET {path} HTTP/1.1\r\n" + host_lines + "Authorization: {token}\r\n\r\n"
    status, _, body = raw(server, request)
    assert status == 400
    assert json.loads(body)["Code"] == "BAD_HOST"
    assert fetch.calls == 0


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/vaultd/credentials/",
        "/vaultd/credentials/../credentials",
        "/vaultd/../vaultd/credentials",
        "//vaultd/credentials",
        "/vaultd/credentials?x=1",
        "/vaultd/credentials%00",
        "/../../etc/passwd",
        "http://127.0.0.1:{port}/vaultd/credentials",
    ],
)
def test_any_other_path_is_404(server: CredentialServer, fetch: CountingFetch, path: str) -> None:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{{port}}\r\nAuthorization: {{token}}\r\n\r\n"
    status, _, body = raw(server, request)
    assert status == 404
    assert SECRET.encode() not in body
    assert fetch.calls == 0


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
def test_other_methods_are_405(server: CredentialServer, method: str) -> None:
    request = f"{method} {{path}} HTTP/1.1\r\nHost: 127.0.0.1:{{port}}\r\n"
    status, headers, body = raw(server, request + "Authorization: {token}\r\n\r\n")
    assert status == 405
    assert headers["Allow"] == "GET"
    assert (body == b"") == (method == "HEAD")


def test_a_daemon_error_is_503_with_its_code() -> None:
    def refuse() -> bytes:
        raise Denied("the request was denied in the TUI")

    with CredentialServer(refuse) as server:
        status, _, body = raw(server, GOOD)
    assert status == 503
    assert json.loads(body) == {"Code": "DENIED", "Message": "the request was denied in the TUI"}


def test_environment_replaces_every_other_credential_source(server: CredentialServer) -> None:
    base = {
        "AWS_ACCESS_KEY_ID": "AKIA1",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_SESSION_TOKEN": "t",
        "AWS_SECURITY_TOKEN": "t",
        "AWS_PROFILE": "prod",
        "AWS_DEFAULT_PROFILE": "prod",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": "/tmp/token",
        "AWS_REGION": "eu-west-1",
        "PATH": "/usr/bin",
    }
    env = server.environment(base, "dev")
    assert env == {
        "AWS_REGION": "eu-west-1",
        "PATH": "/usr/bin",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"http://127.0.0.1:{server.port}{PATH}",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": server.token,
        "VAULTD_PROFILE": "dev",
    }
    assert len(server.token) >= 43


def test_stopped_server_refuses_connections(fetch: CountingFetch) -> None:
    server = CredentialServer(fetch)
    server.start()
    port = server.port
    server.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_refresh_decision_follows_the_15_minute_floor() -> None:
    clock = FakeClock()
    fetch = CountingFetch(process_json(3600, "ASIAFIRST"), process_json(7200, "ASIASECOND"))
    source = SessionSource(fetch, clock)
    assert source.current().access_key_id == "ASIAFIRST"
    clock.advance(2700)  # exactly 15:00 left: still served from memory
    assert source.current().access_key_id == "ASIAFIRST"
    assert fetch.calls == 1
    clock.advance(1)  # 14:59 left: fetched again
    assert source.current().access_key_id == "ASIASECOND"
    assert fetch.calls == source.fetches == 2
    assert source.current().access_key_id == "ASIASECOND"
    assert fetch.calls == 2


def test_concurrent_requests_share_one_fetch() -> None:
    fetch = CountingFetch(process_json(3600), delay=0.2)
    source = SessionSource(fetch, FakeClock())
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(source.current().access_key_id))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [KEY_ID] * 8
    assert fetch.calls == 1


def test_a_failed_fetch_is_retried_on_the_next_request() -> None:
    outputs = iter([b"not json", process_json(3600)])
    source = SessionSource(lambda: next(outputs), FakeClock())
    with pytest.raises(ProtocolError):
        source.current()
    assert source.current().access_key_id == KEY_ID
    assert source.fetches == 2


@pytest.mark.parametrize(
    "doc",
    [
        {"Version": 2},
        {"Version": 1, "AccessKeyId": KEY_ID, "SecretAccessKey": SECRET, "Expiration": "x"},
        {
            "Version": 1,
            "AccessKeyId": KEY_ID,
            "SecretAccessKey": SECRET,
            "SessionToken": TOKEN,
            "Expiration": "2026-01-01T00:00:00",
        },
        {
            "Version": 1,
            "AccessKeyId": KEY_ID,
            "SecretAccessKey": SECRET,
            "SessionToken": TOKEN,
            "Expiration": "soon",
        },
    ],
    ids=["version", "no-token", "naive-expiration", "malformed-expiration"],
)
def test_parse_session_refuses_malformed_output(doc: dict[str, object]) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_session(json.dumps(doc).encode())
    assert SECRET not in str(info.value)


def test_container_body_round_trips_through_parse_session() -> None:
    creds = parse_session(process_json(3600))
    doc = json.loads(container_body(creds))
    assert doc["AccessKeyId"] == KEY_ID
    assert doc["Expiration"] == "2026-01-01T01:00:00Z"
