"""docs/threat-model.md T30, always run: the local HTTP endpoints answer another user's process
with 403.  The owner reader ``tcp_owner.peer_uid`` is patched to name uid 4242 (a real other-uid
peer needs root: tests/priv/test_http_snooper.py); the HTTP client is real."""

from __future__ import annotations

import http.client
import json
import webbrowser

import pytest

from vaultd.aws.container_endpoint import PATH, CredentialServer
from vaultd.commands.login import open_in_browser
from vaultd.system import tcp_owner

OUTPUT = json.dumps(
    {
        "Version": 1,
        "AccessKeyId": "ASIATESTSESSION00001",
        "SecretAccessKey": "SessionSecret01",
        "SessionToken": "SessionToken01",
        "Expiration": "2099-01-01T00:00:00Z",
    }
).encode()


def _get(port: int, path: str, token: str | None = None) -> tuple[int, str | None, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers={"Authorization": token} if token else {})
    reply = conn.getresponse()
    result = reply.status, reply.getheader("Location"), reply.read()
    conn.close()
    return result


@pytest.fixture
def foreign(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tcp_owner, "peer_uid", lambda conn: 4242)


@pytest.mark.usefixtures("foreign")
def test_container_endpoint_gives_another_uid_403_and_reports_it() -> None:
    refused: list[int | None] = []
    fetched: list[int] = []

    def fetch() -> bytes:
        fetched.append(1)
        return OUTPUT

    with CredentialServer(fetch, on_refused=refused.append) as server:
        status, _, body = _get(server.port, PATH, server.token)
    assert status == 403 and json.loads(body)["Code"] == "FORBIDDEN"
    assert refused == [4242] and fetched == []  # the daemon was not even asked


def test_container_endpoint_fails_closed_when_the_owner_is_not_listed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tcp_owner, "peer_uid", lambda conn: None)
    refused: list[int | None] = []
    with CredentialServer(lambda: OUTPUT, on_refused=refused.append) as server:
        assert _get(server.port, PATH, server.token)[0] == 403
    assert refused == [None]


def test_the_warning_names_the_uid() -> None:
    assert tcp_owner.refusal_warning(4242, "the sign-in link") == (
        "vaultd: WARNING: a process of uid 4242 tried to fetch the sign-in link and was refused "
        "(403): another user on this machine is after your AWS session"
    )


@pytest.mark.usefixtures("foreign")
def test_login_redirect_gives_another_uid_403_and_is_not_served(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """``webbrowser.open`` is replaced by the fetch of the (foreign) snooper: no browser in CI."""
    seen: list[tuple[int, str | None, bytes]] = []

    def snoop(url: str) -> bool:
        port, path = url.removeprefix("http://127.0.0.1:").split("/", 1)
        seen.append(_get(int(port), "/" + path))
        return True

    monkeypatch.setattr(webbrowser, "open", snoop)
    refused: list[int | None] = []
    target = "https://signin.example/?SigninToken=secret"
    assert open_in_browser(target, wait=0.5, on_refused=refused.append) is False
    assert [s[:2] for s in seen] == [(403, None)] and refused == [4242]
    assert "a process of uid 4242 tried to fetch the sign-in link" in capfd.readouterr().err
