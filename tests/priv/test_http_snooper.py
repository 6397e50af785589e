"""docs/threat-model.md T30: local HTTP endpoints serve only the user.

A snooper run as uid 65534 (setpriv; it can read any browser's argv in /proc) fetches the
``vaultd login`` redirect and the ``vaultd exec --server`` endpoint with the right token: it
gets 403 and the command warns on stderr; the user's own process (the browser stand-in) gets
the redirect and the credentials.  The endpoints' sessions come from canned bytes here: what is
under test is who the HTTP server answers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import webbrowser
from pathlib import Path

import pytest

from vaultd.aws.container_endpoint import PATH, CredentialServer
from vaultd.commands.login import open_in_browser

pytestmark = pytest.mark.priv
NOBODY = 65534
SNOOPER = r"""
import http.client, sys, urllib.parse
url = urllib.parse.urlsplit(sys.argv[1])
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
headers = {"Authorization": sys.argv[2]} if len(sys.argv) > 2 else {}
conn.request("GET", url.path, headers=headers)
reply = conn.getresponse()
print(reply.status, reply.getheader("Location"), reply.read().decode())
"""
OUTPUT = json.dumps(
    {
        "Version": 1,
        "AccessKeyId": "ASIATESTSESSION00001",
        "SecretAccessKey": "SessionSecret000000000000000000000000001",
        "SessionToken": "SessionToken0001",
        "Expiration": "2099-01-01T00:00:00Z",
    }
).encode()


@pytest.fixture(autouse=True)
def _needs_root() -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the snooper as another uid")
    if not Path("/proc/net/tcp").exists():
        pytest.skip("the owner check reads /proc/net/tcp (Linux)")


def _snoop(*args: str, as_nobody: bool = True) -> str:
    drop = ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups"]
    argv = [*(drop if as_nobody else []), "/usr/bin/python3", "-I", "-S", "-c", SNOOPER, *args]
    return subprocess.run(argv, capture_output=True, timeout=30, check=True).stdout.decode()


def test_the_container_endpoint_refuses_another_uid_even_with_the_token(
    capfd: pytest.CaptureFixture[str],
) -> None:
    refused: list[int | None] = []
    with CredentialServer(lambda: OUTPUT, on_refused=refused.append) as server:
        url = f"http://127.0.0.1:{server.port}{PATH}"
        snooped = _snoop(url, server.token)
        own = _snoop(url, server.token, as_nobody=False)
    assert snooped.startswith("403 None ") and "FORBIDDEN" in snooped
    assert "Session" not in snooped
    assert refused == [NOBODY]
    assert own.startswith("200 None ") and "SessionSecret" in own


def test_login_redirect_goes_to_the_user_and_a_snooper_gets_403(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The browser is a stand-in command in ``BROWSER``: the snooper first, then the user."""
    browser = tmp_path / "browser"
    drop = f"setpriv --reuid {NOBODY} --regid {NOBODY} --clear-groups"
    run = '/usr/bin/python3 -I -S -c "$SNOOPER" "$1"'
    browser.write_text(
        f"#!/bin/sh\n{drop} {run} > {tmp_path}/snooped\n{run} > {tmp_path}/browsed\n"
    )
    browser.chmod(0o755)
    monkeypatch.setenv("SNOOPER", SNOOPER)
    monkeypatch.setenv("BROWSER", str(browser))
    monkeypatch.setattr(webbrowser, "_tryorder", None)
    monkeypatch.setattr(webbrowser, "_browsers", {})
    refused: list[int | None] = []
    target = "https://signin.example/federation?Action=login&SigninToken=secret"
    assert open_in_browser(target, wait=20, on_refused=refused.append) is True
    assert (tmp_path / "snooped").read_text().startswith("403 None")
    assert (tmp_path / "browsed").read_text().startswith(f"302 {target} ")
    assert refused == [NOBODY]
    err = capfd.readouterr().err
    assert f"vaultd: WARNING: a process of uid {NOBODY} tried to fetch the sign-in link" in err
    assert "secret" not in err
    assert sys.platform.startswith("linux")
