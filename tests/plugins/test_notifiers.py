"""The first-party notifiers against real peers: a local HTTP server, and a fake notify-send.

There is no D-Bus session here, so ``notify-send`` is a fake: a small script on PATH that
records its argv (and, for the timeout test, its pid before sleeping).
"""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from vaultd.plugins.notify_desktop import DesktopNotifier
from vaultd.plugins.notify_webhook import URL_ENV, WebhookNotifier, check_url

from vaultd.errors import ConfigError
from vaultd.plugin.api import Notifier, NotifyEvent, Severity
from vaultd.testing.contracts import NotifierContract

EVENT = NotifyEvent("approval.opened", "dev", Severity.WARNING, "approve dev?")


class Hook(ThreadingHTTPServer):
    """A webhook receiver on 127.0.0.1: answers with scripted statuses, then 200."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.statuses: list[int] = []
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Handler(BaseHTTPRequestHandler):
    server: Hook

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            self.server.bodies.append(body)
            status = self.server.statuses.pop(0) if self.server.statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def webhook(url: str, **kwargs: float) -> WebhookNotifier:
    return WebhookNotifier(url, backoff=0.01, timeout=5.0, **kwargs)  # type: ignore[arg-type]


class TestWebhookContract(NotifierContract):
    @pytest.fixture(autouse=True)
    def _server(self, hook: Hook) -> None:
        self.hook = hook

    def make_plugin(self) -> Notifier:
        return webhook(self.hook.url)

    def delivered(self, plugin: Notifier, count: int) -> Sequence[str]:
        assert isinstance(plugin, WebhookNotifier)
        assert plugin.flush(10)
        docs = [json.loads(body) for body in self.hook.bodies]
        assert len(docs) == count
        return [f"{d['event']} {d['profile']} {d['severity']} {d['message']}" for d in docs]


def test_webhook_posts_the_event_json(hook: Hook) -> None:
    notifier = webhook(hook.url)
    notifier.notify(EVENT)
    assert notifier.flush(10)
    assert [json.loads(b) for b in hook.bodies] == [EVENT.to_json()]


def test_webhook_retries_on_500_until_it_succeeds(hook: Hook) -> None:
    hook.statuses = [500, 503]
    notifier = webhook(hook.url, attempts=3)
    notifier.notify(EVENT)
    assert notifier.flush(10)
    assert len(hook.bodies) == 3
    assert len(set(hook.bodies)) == 1


def test_webhook_gives_up_after_n_tries_and_keeps_working(
    hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    hook.statuses = [500] * 4
    notifier = webhook(hook.url, attempts=4)
    assert notifier.notify(EVENT) is None
    assert notifier.flush(10)
    assert len(hook.bodies) == 4
    assert "gave up on event approval.opened after 4 tries" in caplog.text
    later = NotifyEvent("approval.resolved", "dev", Severity.INFO, "approved")
    notifier.notify(later)
    assert notifier.flush(10)
    assert json.loads(hook.bodies[-1]) == later.to_json()


def test_webhook_does_not_retry_a_4xx(hook: Hook, caplog: pytest.LogCaptureFixture) -> None:
    hook.statuses = [404]
    notifier = webhook(hook.url, attempts=3)
    notifier.notify(EVENT)
    assert notifier.flush(10)
    assert len(hook.bodies) == 1
    assert "HTTP 404" in caplog.text


def test_webhook_with_nobody_listening_never_raises(hook: Hook) -> None:
    url = hook.url
    hook.shutdown()
    hook.server_close()
    notifier = webhook(url, attempts=2)
    notifier.notify(EVENT)
    assert notifier.flush(10)


@pytest.mark.parametrize(
    "url",
    ["http://example.com/hook", "http://localhost:8080/", "ftp://127.0.0.1/", "file:///etc/x"],
)
def test_webhook_refuses_plain_http_off_loopback_and_other_schemes(url: str) -> None:
    with pytest.raises(ConfigError, match=URL_ENV):
        WebhookNotifier(url)


def test_webhook_url_from_env_or_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(URL_ENV, raising=False)
    assert WebhookNotifier().is_available() is False
    WebhookNotifier().notify(EVENT)  # a no-op, not an error
    monkeypatch.setenv(URL_ENV, "https://hooks.example.test/vaultd")
    assert WebhookNotifier().is_available() is True
    assert check_url("http://127.0.0.1:9/x") == "http://127.0.0.1:9/x"


def fake_notify_send(bin_dir: Path, out_dir: Path) -> Path:
    """Write a fake ``notify-send`` that saves its argv as JSON in ``out_dir``."""
    bin_dir.mkdir(exist_ok=True)
    out_dir.mkdir(exist_ok=True)
    script = bin_dir / "notify-send"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys, uuid\n"
        f"path = os.path.join({str(out_dir)!r}, uuid.uuid4().hex + '.json')\n"
        "with open(path, 'w') as f:\n"
        "    json.dump({'argv': sys.argv[1:]}, f)\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def calls(out_dir: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in out_dir.glob("*.json")]


class TestDesktopContract(NotifierContract):
    @pytest.fixture(autouse=True)
    def _fake(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.out = tmp_path / "out"
        fake_notify_send(tmp_path / "bin", self.out)
        monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")

    def make_plugin(self) -> Notifier:
        return DesktopNotifier()

    def delivered(self, plugin: Notifier, count: int) -> Sequence[str]:
        assert isinstance(plugin, DesktopNotifier)
        assert plugin.flush(10)
        found = calls(self.out)
        assert len(found) == count
        return ["\n".join(c["argv"]) for c in found]  # type: ignore[arg-type]


def test_desktop_passes_text_after_double_dash_with_urgency(tmp_path: Path) -> None:
    script = fake_notify_send(tmp_path / "bin", tmp_path / "out")
    notifier = DesktopNotifier(executable=str(script))
    notifier.notify(NotifyEvent("approval.opened", "dev", Severity.CRITICAL, "--version"))
    assert notifier.flush(10)
    (call,) = calls(tmp_path / "out")
    assert call["argv"] == [
        "--app-name=vaultd",
        "--urgency=critical",
        "--",
        "vaultd: approval.opened (dev)",
        "--version",
    ]


def test_desktop_without_notify_send_is_unavailable_and_silent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    notifier = DesktopNotifier()
    assert notifier.is_available() is False
    notifier.notify(EVENT)
    assert notifier.flush(1)


def test_desktop_kills_a_notify_send_that_hangs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    script = tmp_path / "notify-send"
    script.write_text(f"#!/bin/sh\necho $$ > {tmp_path / 'pid'}\nexec sleep 60\n")
    script.chmod(0o700)
    notifier = DesktopNotifier(timeout=1.0, executable=str(script))
    notifier.notify(EVENT)  # returns while the fake is still sleeping
    assert notifier.flush(20)
    pid = int((tmp_path / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "did not finish within 1.0 s; killed" in caplog.text
