"""Fixtures for the local credential server and console sign-in tests.

``make_vault`` gives a real daemon (SoftHSM2 token, `vaultd serve`) with FakeSts as STS.
``federation`` is a local stand-in for the AWS federation endpoint: no real peer can run
offline, so it checks the Session JSON the way AWS documents it and hands out counter tokens.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import Installation, create_installation
from vaultd.testing.softhsm import find_softhsm_module

ACCESS_KEY_ID = "AKIACANARY0000000042"
SECRET = "CanarySecretKey0000000000000000000000042"
MakeVault = Callable[..., Installation]


@pytest.fixture
def fake_sts() -> Iterator[FakeSts]:
    with FakeSts() as sts:
        yield sts


@pytest.fixture
def make_vault(tmp_path: Path, fake_sts: FakeSts) -> Iterator[MakeVault]:
    """Factory: ``make_vault(start=True)`` -> an Installation with key pair ``dev`` stored."""
    if find_softhsm_module() is None or shutil.which("softhsm2-util") is None:
        pytest.skip("SoftHSM2 is not installed (apt-get install softhsm2)")
    made: list[Installation] = []

    def make(*, start: bool = True) -> Installation:
        inst = create_installation(tmp_path / f"vault{len(made)}", sts_url=fake_sts.url)
        made.append(inst)
        inst.add_key_pair("dev", ACCESS_KEY_ID, SECRET)
        if start:
            inst.start_daemon()
        return inst

    yield make
    for inst in made:
        inst.stop_daemon()


class FederationStandIn:
    """``getSigninToken`` on 127.0.0.1: a SigninToken for a well-formed Session, else 400."""

    def __init__(self) -> None:
        self.sessions: list[dict[str, str]] = []
        self.durations: list[str | None] = []
        self.issued: list[str] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                session = json.loads(query.get("Session", ["null"])[0])
                keys = {"sessionId", "sessionKey", "sessionToken"}
                good = (
                    parts.path == "/federation"
                    and query.get("Action") == ["getSigninToken"]
                    and isinstance(session, dict)
                    and set(session) == keys
                    and all(isinstance(v, str) and v for v in session.values())
                )
                if not good:
                    self.send_error(400)
                    return
                stand_in.sessions.append(session)
                stand_in.durations.append(query.get("SessionDuration", [None])[0])
                token = f"signin-token-{len(stand_in.sessions)}"
                stand_in.issued.append(token)
                body = json.dumps({"SigninToken": token}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/federation"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


@pytest.fixture
def federation() -> Iterator[FederationStandIn]:
    stand_in = FederationStandIn()
    yield stand_in
    stand_in.close()
