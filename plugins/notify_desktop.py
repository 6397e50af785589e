"""Notifier: a freedesktop notification through ``notify-send`` (entry point ``desktop``).

Without ``notify-send`` on PATH it is unavailable and ``notify`` does nothing. ``notify``
starts the tool and returns at once; a reaper thread kills it after ``timeout`` seconds.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading

from vaultd.plugin.api import PLUGIN_API_VERSION, NotifyEvent, Severity

log = logging.getLogger(__name__)

_URGENCY = {Severity.INFO: "low", Severity.WARNING: "normal", Severity.CRITICAL: "critical"}


class DesktopNotifier:
    """Shows each event as a desktop notification; never blocks the caller."""

    PLUGIN_API_VERSION = PLUGIN_API_VERSION

    def __init__(self, *, timeout: float = 2.0, executable: str | None = None) -> None:
        self._exe = executable or shutil.which("notify-send")
        self._timeout = timeout
        self._lock = threading.Lock()
        self._reapers: list[threading.Thread] = []

    def is_available(self) -> bool:
        """Whether ``notify-send`` was found."""
        return self._exe is not None

    def notify(self, event: NotifyEvent) -> None:
        """Start ``notify-send`` for ``event`` (no-op when unavailable); never raises."""
        if self._exe is None:
            return
        summary = f"vaultd: {event.event}" + (f" ({event.profile})" if event.profile else "")
        argv = [
            self._exe,
            "--app-name=vaultd",
            f"--urgency={_URGENCY[event.severity]}",
            "--",  # the text below is never read as an option
            summary,
            event.message,
        ]
        try:
            proc = subprocess.Popen(  # noqa: S603 - fixed tool, no shell, text after "--"
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        except OSError as exc:
            log.warning("notify-send could not start: %s", exc)
            return
        reaper = threading.Thread(target=self._reap, args=(proc,), daemon=True)
        with self._lock:
            self._reapers = [t for t in self._reapers if t.is_alive()]
            self._reapers.append(reaper)
        reaper.start()

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        try:
            proc.wait(self._timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            log.warning("notify-send did not finish within %.1f s; killed", self._timeout)

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for started notifications; True if all finished."""
        with self._lock:
            pending = list(self._reapers)
        for reaper in pending:
            reaper.join(timeout)
        return not any(r.is_alive() for r in pending)
