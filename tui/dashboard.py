"""The dashboard: every profile with its MFA method, session state and a live countdown."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label

from vaultd.core.termtext import terminal_safe

from .data import DaemonStatus, PendingApproval, ProfileRow, hms
from .messages import ClearCooldown
from .widgets import ConnectionLine, DaemonLine

COLUMNS = ("Profile", "Kind", "MFA", "Session", "Left")
MIN_WIDTHS = {"Session": len("awaiting approval"), "Left": len("100:00:00")}


PROGRESS = {
    "next_code_wait": "next code (touched)",
    "calling_sts": "calling STS",
    "token_touch": "touch your YubiKey",
}
"""The Session cell of an answered approval on its way, by its last progress event."""


def session_state(row: ProfileRow, now: datetime, waiting: bool, note: str = "") -> tuple[str, str]:
    """The Session and Left cells for ``row`` at ``now``; ``note`` (a cooldown, progress)
    takes the Session cell."""
    left = row.seconds_left(now)
    if note:
        state = note
    elif waiting:
        state = "awaiting approval"
    elif left is None:
        state = "none"
    else:
        state = "active" if left > 0 else "expired"
    return state, hms(left) if left is not None and left > 0 else "-"


class DashboardScreen(Screen[None]):
    """Profiles and sessions; the home screen."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "app.refresh_status", "Refresh"),
        Binding("l", "app.lock", "Lock"),
        Binding("a", "app.show_events", "Audit"),
        Binding("b", "app.break_glass", "Break-glass"),
        Binding("u", "app.unlock", "Unlock"),
        Binding("c", "clear_cooldown", "Clear cooldown", show=False),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, socket_path: Path, *, clock: Callable[[], datetime], tick: float) -> None:
        super().__init__()
        self._socket_path = socket_path
        self._clock = clock
        self._tick = tick
        self._rows: tuple[ProfileRow, ...] = ()
        self._waiting: frozenset[str] = frozenset()
        self._cooldown_until: dict[str, datetime] = {}
        self._progress: Mapping[str, str] = {}

    def compose(self) -> ComposeResult:
        yield Label("vaultd — AWS sessions", id="heading")
        yield DaemonLine(self._socket_path, id="daemon")
        yield ConnectionLine(id="connection")
        table: DataTable[str | Text] = DataTable(
            id="profiles", cursor_type="row", zebra_stripes=True
        )
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self.watch(self.app, "daemon_status", self._show_status)
        self.watch(self.app, "pending", self._show_pending)
        self.set_interval(self._tick, self._update_countdowns)

    def _show_status(self, status: DaemonStatus | None) -> None:
        self._rows = status.profiles if status is not None else ()
        now = self._clock()
        cooldowns = status.cooldowns if status is not None else {}
        self._cooldown_until = {n: now + timedelta(seconds=s) for n, s in cooldowns.items()}
        self._progress = status.in_progress if status is not None else {}
        rows = [
            (
                *(Text(terminal_safe(v)) for v in (r.name, r.kind, r.approval)),
                *session_state(r, now, False),
            )
            for r in self._rows
        ]
        table = self.query_one("#profiles", DataTable)
        table.clear(columns=True)
        # Columns sized here from the data (the ticking ones with room to spare), so the
        # layout never waits for the table's own measuring.
        for index, name in enumerate(COLUMNS):
            sizes = [cell_len(str(cells[index])) for cells in rows]
            table.add_column(name, key=name, width=max(len(name), MIN_WIDTHS.get(name, 0), *sizes))
        for row, cells in zip(self._rows, rows, strict=True):
            table.add_row(*cells, key=row.name)
        self._update_countdowns()

    def _show_pending(self, pending: tuple[PendingApproval, ...]) -> None:
        self._waiting = frozenset(a.profile for a in pending)
        self._update_countdowns()

    def _update_countdowns(self) -> None:
        table = self.query_one("#profiles", DataTable)
        now = self._clock()
        for row in self._rows:
            state, left = session_state(row, now, row.name in self._waiting, self._note(row, now))
            table.update_cell(row.name, "Session", state)
            table.update_cell(row.name, "Left", left)

    def _note(self, row: ProfileRow, now: datetime) -> str:
        """A running deny cooldown (c clears it), else the answered approval's progress."""
        until = self._cooldown_until.get(row.name)
        if until is not None and until > now:
            return f"denied, {math.ceil((until - now).total_seconds())}s (c)"
        return PROGRESS.get(self._progress.get(row.name, ""), "")

    def action_clear_cooldown(self) -> None:
        """End the selected profile's deny cooldown."""
        table = self.query_one("#profiles", DataTable)
        if not self._rows or table.cursor_row >= len(self._rows):
            return
        profile = self._rows[table.cursor_row].name
        self._cooldown_until.pop(profile, None)
        self.post_message(ClearCooldown(profile))
