"""The audit view: the daemon's real audit records, newest first, filtered by profile or event.

Records come from ``audit_tail``: once on opening, every ``poll`` seconds, and whenever the
daemon pushes an event (the app counts them in ``activity``).  Break-glass and other critical
records are highlighted.  Audit records never hold secrets, and cells are plain text, never
markup (profile names and executables come from elsewhere).
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Label

from vaultd.core.termtext import terminal_safe
from vaultd.errors import VaultError

from .data import AuditRecord, DaemonPort, parse_audit
from .widgets import ConnectionLine

COLUMNS = ("Time", "Seq", "Event", "Profile", "Outcome", "Client", "Detail")
AUDIT_ROWS = 200
CRITICAL_STYLE = "bold red"


def audit_cells(record: AuditRecord) -> tuple[Text, ...]:
    """The table cells for ``record``; critical ones in :data:`CRITICAL_STYLE`."""
    style = CRITICAL_STYLE if record.critical else ""
    values = (
        record.at.strftime("%Y-%m-%d %H:%M:%S"),
        str(record.seq),
        record.event,
        record.profile,
        record.outcome,
        record.client,
        record.detail,
    )
    return tuple(Text(terminal_safe(value), style=style) for value in values)


class EventsScreen(Screen[None]):
    """The audit log with a filter field."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("ctrl+r", "reload", "Reload"),
        Binding("ctrl+l", "app.lock", "Lock"),
        Binding("ctrl+q", "app.quit", "Quit"),
    ]

    def __init__(self, client: DaemonPort, *, poll: float) -> None:
        super().__init__()
        self._client = client
        self._poll = poll
        self._records: tuple[AuditRecord, ...] = ()

    def compose(self) -> ComposeResult:
        yield Label("vaultd — audit log (newest first)", id="heading")
        yield ConnectionLine(id="connection")
        yield Input(placeholder="filter by profile or event, e.g. 'root breakglass'", id="filter")
        yield Label("", id="audit-state")
        table: DataTable[Text] = DataTable(id="events", cursor_type="row", zebra_stripes=True)
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#events", DataTable).add_columns(*COLUMNS)
        self.watch(self.app, "activity", self._activity)
        self.set_interval(self._poll, self.reload)

    def _activity(self, _count: int) -> None:
        self.reload()

    def action_reload(self) -> None:
        """Read the audit log now."""
        self.reload()

    @work(exclusive=True, group="audit")
    async def reload(self) -> None:
        """Fetch the newest records; a failure is shown above the table, the rows stay."""
        state = self.query_one("#audit-state", Label)
        try:
            records = parse_audit(await self._client.request("audit_tail", n=AUDIT_ROWS))
        except VaultError as exc:
            state.update(Text(f"cannot read the audit log: {exc.code}: {exc.message}"))
            return
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            state.update(Text(f"cannot read the audit log: {reason}"))
            return
        state.update("")
        if records != self._records:
            self._records = records
            self._render_rows()

    @on(Input.Changed, "#filter")
    def _filter_changed(self) -> None:
        self._render_rows()

    def _render_rows(self) -> None:
        query = self.query_one("#filter", Input).value
        table = self.query_one("#events", DataTable)
        table.clear()
        for record in self._records:
            if record.matches(query):
                table.add_row(*audit_cells(record), key=str(record.seq))
