"""Small widgets shared by the screens: the daemon line and the connection line."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from textual.widgets import Static

from .data import DaemonStatus


def describe_daemon(status: DaemonStatus | None, socket_path: Path) -> str:
    """One line about the daemon: sealed or not, token label, pid and active grants."""
    if status is None:
        return f"vaultd at {escape(str(socket_path))}: no answer yet"
    state = "[b red]SEALED[/] (u unlocks)" if status.sealed else "[b green]unsealed[/]"
    line = f"vaultd pid {status.pid} · token {escape(status.token_label)} · {state}"
    if status.grants:
        line += f" · [b red]{len(status.grants)} break-glass grant(s) active[/]"
    return line


class DaemonLine(Static):
    """Shows :func:`describe_daemon` for the app's latest status."""

    def __init__(self, socket_path: Path, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._socket_path = socket_path

    def on_mount(self) -> None:
        self.watch(self.app, "daemon_status", self._show)

    def _show(self, status: DaemonStatus | None) -> None:
        self.update(describe_daemon(status, self._socket_path))


class ConnectionLine(Static):
    """Shows the app's connection state ("connected", "daemon disconnected — retrying ...")."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(markup=False, id=id)

    def on_mount(self) -> None:
        self.watch(self.app, "connection", self._show)

    def _show(self, text: str) -> None:
        self.update(text)
