"""Notifier: POST each event as JSON to a webhook (entry point ``webhook``).

The URL comes from the constructor or ``VAULTD_WEBHOOK_URL``; it must be ``https://`` or
``http://127.0.0.1``. Without one the notifier is unavailable. Events are queued (at most
``queue_size``; more are dropped and logged) and sent by one background thread: each POST has a
``timeout``, a 5xx reply or a network error is retried up to ``attempts`` tries in all, with
``backoff`` seconds doubling between tries. Redirects are not followed. Nothing is raised into
the caller.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from vaultd.plugin.api import PLUGIN_API_VERSION, ConfigError, NotifyEvent

log = logging.getLogger(__name__)

URL_ENV = "VAULTD_WEBHOOK_URL"


def check_url(url: str) -> str:
    """Return ``url`` if it is https, or http to 127.0.0.1; ``ConfigError`` otherwise."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname == "127.0.0.1":
        return url
    raise ConfigError(
        f"{URL_ENV} must be an https:// URL or http://127.0.0.1[:PORT]/...; got scheme "
        f"{parts.scheme!r} and host {parts.hostname!r}"
    )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class WebhookNotifier:
    """Sends events to a webhook from a background thread; ``notify`` only queues."""

    PLUGIN_API_VERSION = PLUGIN_API_VERSION

    def __init__(
        self,
        url: str | None = None,
        *,
        attempts: int = 3,
        timeout: float = 5.0,
        backoff: float = 1.0,
        queue_size: int = 100,
    ) -> None:
        raw = url if url is not None else os.environ.get(URL_ENV, "")
        self._url = check_url(raw) if raw else None
        self._attempts = max(1, attempts)
        self._timeout = timeout
        self._backoff = backoff
        self._queue: queue.Queue[NotifyEvent] = queue.Queue(queue_size)
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if self._url and urlsplit(self._url).scheme == "http":
            handlers.append(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
        self._opener = urllib.request.build_opener(*handlers)
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def is_available(self) -> bool:
        """Whether a URL is configured."""
        return self._url is not None

    def notify(self, event: NotifyEvent) -> None:
        """Queue ``event`` for sending (dropped, with a log line, if the queue is full)."""
        if self._url is None:
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            log.warning("webhook queue full; dropped event %s", event.event)
            return
        with self._start_lock:
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._run, args=(self._url,), name="vaultd-webhook", daemon=True
                )
                self._worker.start()

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the queue to drain; True if it did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.01)
        return self._queue.unfinished_tasks == 0

    def _run(self, url: str) -> None:
        while True:
            event = self._queue.get()
            try:
                self._send(url, event)
            finally:
                self._queue.task_done()

    def _send(self, url: str, event: NotifyEvent) -> None:
        body = json.dumps(event.to_json()).encode()
        delay = self._backoff
        for attempt in range(1, self._attempts + 1):
            request = urllib.request.Request(  # noqa: S310 - scheme checked by check_url
                url, data=body, method="POST", headers={"Content-Type": "application/json"}
            )
            try:
                with self._opener.open(request, timeout=self._timeout) as reply:
                    reply.read()
                return
            except urllib.error.HTTPError as exc:
                if exc.code < 500:
                    log.warning("webhook refused event %s: HTTP %d", event.event, exc.code)
                    return
                why = f"HTTP {exc.code}"
            except (OSError, ValueError) as exc:
                why = type(exc).__name__
            log.info("webhook try %d/%d failed (%s)", attempt, self._attempts, why)
            if attempt < self._attempts:
                time.sleep(delay)
                delay *= 2
        log.warning("webhook gave up on event %s after %d tries", event.event, self._attempts)
