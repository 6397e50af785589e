"""`vaultd login` end to end: real daemon (SoftHSM2, `vaultd serve`), FakeSts as STS, and the
local federation stand-in (``conftest.FederationStandIn``) in place of signin.aws.amazon.com."""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from vaultd.aws.federation import login_url
from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import Installation, approve_pending

from .conftest import ACCESS_KEY_ID, SECRET, FederationStandIn, MakeVault

pytestmark = pytest.mark.hsm

BROWSER = """
import sys, http.client, urllib.parse
url = urllib.parse.urlsplit(sys.argv[2])
statuses = []
for _ in range(2):
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.request("GET", url.path)
    reply = conn.getresponse()
    statuses.append(reply.status)
    location = reply.getheader("Location") or location
    conn.close()
with open(sys.argv[1], "w") as out:
    out.write(repr((sys.argv[2], statuses, location)))
"""


# `vaultd login` through vaultd.cli.main; "login" is registered here until cli.COMMAND_MODULES
# lists it (a no-op afterwards).
CLI = (
    "import sys, vaultd.cli as cli\n"
    "if 'login' not in cli.COMMAND_MODULES: cli.COMMAND_MODULES += ('login',)\n"
    "sys.exit(cli.main(sys.argv[1:]))\n"
)


def login(
    inst: Installation, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", CLI, "login", *args],
        env={**inst.env, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def test_print_and_browser_sign_in_with_a_role_profile(
    make_vault: MakeVault, fake_sts: FakeSts, federation: FederationStandIn, tmp_path: Path
) -> None:
    inst = make_vault()
    env = {"VAULTD_FEDERATION_URL": federation.url}
    proc = login(inst, "admin", "--print", env=env)
    approve_pending(inst, "123456")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.decode() == login_url(federation.url, "signin-token-1") + "\n"
    query = parse_qs(urlsplit(out.decode().strip()).query)
    assert query["Destination"] == ["https://console.aws.amazon.com/"]
    assert query["Issuer"] == ["vaultd"] and query["Action"] == ["login"]
    assert b"15 minutes" in err and b"signin-token" not in err
    session = federation.sessions[0]
    assert session["sessionId"].startswith("ASIA") and session["sessionId"] != ACCESS_KEY_ID
    assert federation.durations == [None]
    assert fake_sts.calls("AssumeRole") == 1
    for secret in (session["sessionKey"], session["sessionToken"], SECRET):
        assert secret.encode() not in out + err

    # Browser mode: the browser's argv holds a one-shot 127.0.0.1 link, never the sign-in URL.
    record, script = tmp_path / "browser.txt", tmp_path / "browser.py"
    script.write_text(BROWSER)
    browser = shlex.join([sys.executable, str(script), str(record)]) + " %s"
    proc = login(inst, "admin", "--duration", "3600", env={**env, "BROWSER": browser})
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out == b"" and b"signin-token" not in err
    argv_url, statuses, location = eval(record.read_text())  # noqa: S307 - our own repr
    assert urlsplit(argv_url).hostname == "127.0.0.1" and "signin-token" not in argv_url
    assert statuses == [302, 404]  # the link works once
    assert location == login_url(federation.url, "signin-token-2")
    assert federation.durations == [None, "3600"]
    assert fake_sts.calls("AssumeRole") == 1  # served from the daemon's cache


def test_refusals_happen_before_the_daemon_is_asked(
    make_vault: MakeVault, fake_sts: FakeSts, federation: FederationStandIn
) -> None:
    inst = make_vault(start=False)  # a daemon request would fail with DAEMON_NOT_RUNNING
    env = {"VAULTD_FEDERATION_URL": federation.url}
    bad = login(inst, "admin", env={"VAULTD_FEDERATION_URL": "http://signin.example/federation"})
    _, err = bad.communicate(timeout=60)
    assert bad.returncode == 78 and b"CONFIG_INVALID" in err and b"https://" in err
    short = login(inst, "admin", "--duration", "300", env=env)
    _, err = short.communicate(timeout=60)
    assert short.returncode == 2 and b"900-43200" in err
    missing = login(inst, "nosuch", env=env)
    assert missing.communicate(timeout=60)[1].count(b"UNKNOWN_PROFILE") == 1
    assert federation.sessions == [] and fake_sts.calls() == 0


def test_no_browser_means_no_sign_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """``webbrowser.open`` is replaced (no browser runs in CI): refused, or never fetched."""
    import webbrowser

    from vaultd.commands.login import open_in_browser

    seen: list[str] = []

    def browser(answer: bool) -> Callable[[str], bool]:
        def open_url(url: str) -> bool:
            seen.append(url)
            return answer

        return open_url

    monkeypatch.setattr(webbrowser, "open", browser(False))
    assert open_in_browser("https://signin.example/?SigninToken=x") is False
    monkeypatch.setattr(webbrowser, "open", browser(True))  # "opened", but nothing fetches
    assert open_in_browser("https://signin.example/?SigninToken=x", wait=0.2) is False
    assert len(seen) == 2 and all("SigninToken" not in url for url in seen)


def test_profile_without_a_role_signs_in_through_get_federation_token(
    make_vault: MakeVault, fake_sts: FakeSts, federation: FederationStandIn
) -> None:
    inst = make_vault()
    proc = login(inst, "dev", "--print", env={"VAULTD_FEDERATION_URL": federation.url})
    approve_pending(inst, "123456", profile="dev")  # presence first: the MFA session
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.decode().startswith(federation.url)
    (sent,) = [r for r in fake_sts.requests if r.action == "GetFederationToken"]
    assert sent.access_key_id == ACCESS_KEY_ID  # made inside the daemon with the stored keys
    assert fake_sts.calls("GetSessionToken") == 1
    session = federation.sessions[0]
    assert session["sessionId"].startswith("ASIA")
    assert SECRET.encode() not in out + err
