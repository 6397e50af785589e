"""The events view: what the daemon reported, newest first, filtered by profile or event."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Label

from .data import LogEntry
from .widgets import ConnectionLine

COLUMNS = ("Time", "Event", "Profile", "Detail")


class EventsScreen(Screen[None]):
    """The event log with a filter field."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("ctrl+l", "app.lock", "Lock"),
        Binding("ctrl+q", "app.quit", "Quit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._entries: tuple[LogEntry, ...] = ()

    def compose(self) -> ComposeResult:
        yield Label("vaultd — events (newest first)", id="heading")
        yield ConnectionLine(id="connection")
        yield Input(placeholder="filter by profile or event, e.g. 'dev opened'", id="filter")
        table: DataTable[str | Text] = DataTable(id="events", cursor_type="row", zebra_stripes=True)
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#events", DataTable).add_columns(*COLUMNS)
        self.watch(self.app, "log_entries", self._show_entries)

    def _show_entries(self, entries: tuple[LogEntry, ...]) -> None:
        self._entries = entries
        self._render_rows()

    @on(Input.Changed, "#filter")
    def _filter_changed(self) -> None:
        self._render_rows()

    def _render_rows(self) -> None:
        query = self.query_one("#filter", Input).value
        table = self.query_one("#events", DataTable)
        table.clear()
        for entry in reversed(self._entries):
            if entry.matches(query):
                at = entry.at.strftime("%H:%M:%S")
                table.add_row(at, Text(entry.event), Text(entry.profile), Text(entry.detail))
