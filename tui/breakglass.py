"""The break-glass screen: a short root session after a reason and two factors (docs/threat-model.md
T18).

Pick a root profile (only those the daemon marks ``root``: stored root keys, or AssumeRoot:
then also the member account and the task, see :mod:`.root_target`), type a reason (8-500
characters), then the security key PIN (required: the daemon asks the key for user
verification, FIDO2_PIN_REQUIRED without it) and the 6-digit MFA code (the root account's, or
for AssumeRoot the source profile's device).
Nothing is sent until the reason, PIN and code are complete; the PIN and code leave the fields the
moment they are sent.  While the daemon waits for the touch the screen says so.  On success the
credentials are read once (``grant``) into the :class:`GrantPanel`, the only place they exist
in the TUI; "End now" (``grant_end``) and leaving the screen wipe them.  Active grants are
listed; asking to see one again gets the daemon's ``GRANT_USED``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Input, Label, Select

from vaultd.core.model import CODE_RE
from vaultd.core.termtext import terminal_safe
from vaultd.errors import VaultError

from .data import (
    DaemonPort,
    DaemonStatus,
    GrantInfo,
    ProfileRow,
    Secret,
    export_lines,
    grant_of,
    hms,
    reason_ok,
)
from .grant import GrantPanel
from .root_target import RootTarget
from .widgets import ConnectionLine

PROFILE_HINT = "choose the root profile"
TARGET_HINT = "choose the member account and the root task"
SOURCE_CODE_HINT = "enter the 6-digit code of the source profile's MFA device (a fresh session)"
REASON_HINT = "type a reason of 8-500 characters (it goes to the audit log)"
PIN_HINT = "enter the security key PIN (required: the key verifies you after the touch)"
CODE_HINT = "enter the root account's 6-digit MFA code"
READY_HINT = "Enter or Start opens the session"
TOUCH_PROMPT = "touch your security key (user verification)"
GRANT_COLUMNS = ("Grant", "Profile", "Left", "Read", "Reason")


class BreakGlassScreen(Screen[None]):
    """Open a break-glass grant and show its credentials once."""

    BINDINGS: ClassVar[list[BindingType]] = [
        # Priority: focus moves while Tab is dispatched, before the keys typed after it are
        # (a bubbled Tab moved it late, and fast typing landed in the previous field).
        Binding("tab", "app.focus_next", show=False, priority=True),
        Binding("shift+tab", "app.focus_previous", show=False, priority=True),
        Binding("escape", "leave", "Back (clears credentials)"),
        Binding("ctrl+q", "app.quit", "Quit"),
    ]

    def __init__(self, client: DaemonPort, *, clock: Callable[[], datetime], tick: float) -> None:
        super().__init__()
        self._client = client
        self._clock = clock
        self._tick = tick
        self._choices: tuple[str, ...] | None = None
        self._rows: tuple[ProfileRow, ...] = ()
        self._grants: tuple[GrantInfo, ...] = ()
        self._sending = False

    def compose(self) -> ComposeResult:
        yield Label("vaultd — break-glass root access", id="heading")
        yield ConnectionLine(id="connection")
        with Horizontal(classes="bg-row"):
            yield Select[str]([], prompt="choose…", id="profile")
            yield Input(placeholder="reason (8-500 characters, audited)", id="reason")
        yield RootTarget(classes="bg-row", id="root-target")
        with Horizontal(classes="bg-row"):
            yield Input(placeholder="security key PIN (required)", password=True, id="pin")
            yield Input(
                placeholder="root 6-digit TOTP code",
                restrict=r"[0-9]{0,6}",
                max_length=6,
                id="code",
            )
            yield Button("Start", id="start", variant="error", disabled=True)
        yield Label(PROFILE_HINT, id="bg-hint")
        yield Label("", id="bg-touch")
        yield Label("", id="bg-error")
        yield GrantPanel(clock=self._clock, tick=self._tick, id="grant")
        yield Label("Active break-glass grants (shown once, when opened)", id="grants-title")
        grants: DataTable[str | Text] = DataTable(id="grants", cursor_type="row")
        yield grants
        with Horizontal(classes="bg-row"):
            yield Button("End selected grant", id="end-grant")
        yield Footer()

    async def on_mount(self) -> None:
        grants = self.query_one("#grants", DataTable)
        for name in GRANT_COLUMNS:
            grants.add_column(name, key=name)
        self.query_one("#code", Input).cursor_blink = False
        self.watch(self.app, "daemon_status", self._show_status)
        self.set_interval(self._tick, self._update_left)
        await self.run_action("app.refresh_status")  # the grants as they are now

    # --- the form --------------------------------------------------------------------------

    def _show_status(self, status: DaemonStatus | None) -> None:
        self._rows = tuple(p for p in status.profiles if p.root) if status else ()
        choices = tuple(p.name for p in self._rows)
        if choices != self._choices:  # set_options resets the choice: only on a change
            self._choices = choices
            self.query_one("#profile", Select).set_options((name, name) for name in choices)
        grants = status.grants if status is not None else ()
        if grants != self._grants:
            self._grants = grants
            self._show_grants()

    def _missing(self) -> str | None:
        """What the form still lacks, or None when it can be sent."""
        if self.query_one("#profile", Select).selection is None:
            return PROFILE_HINT
        try:
            target = self.query_one(RootTarget).picked()
        except LookupError:
            return TARGET_HINT
        if not reason_ok(self.query_one("#reason", Input).value):
            return REASON_HINT
        if not self.query_one("#pin", Input).value:
            return PIN_HINT
        if not CODE_RE.fullmatch(self.query_one("#code", Input).value):
            return CODE_HINT if target is None else SOURCE_CODE_HINT
        return None

    @on(Select.Changed, "#profile")
    def _profile_changed(self) -> None:
        chosen = self.query_one("#profile", Select).selection
        row = next((p for p in self._rows if p.name == chosen), None)
        self.query_one(RootTarget).show(row, self._rows)

    @on(Select.Changed)
    @on(Input.Changed)
    def _form_changed(self) -> None:
        missing = self._missing()
        self._hint(missing or READY_HINT)
        self.query_one("#start", Button).disabled = missing is not None or self._sending

    def _hint(self, text: str) -> None:
        hint = self.query_one("#bg-hint", Label)
        if str(hint.render()) != text:  # an update re-lays the screen out: only on a change
            hint.update(text)

    @on(Input.Submitted, "#reason")
    def _reason_done(self) -> None:
        self.query_one("#pin", Input).focus()

    @on(Input.Submitted, "#pin")
    def _pin_done(self) -> None:
        self.query_one("#code", Input).focus()

    @on(Input.Submitted, "#code")
    @on(Button.Pressed, "#start")
    def _start(self) -> None:
        missing = self._missing()
        if missing is not None or self._sending:
            self._hint(missing or "")
            return
        profile = str(self.query_one("#profile", Select).selection)
        target = self.query_one(RootTarget).picked()
        reason = self.query_one("#reason", Input).value
        pin_field, code_field = self.query_one("#pin", Input), self.query_one("#code", Input)
        code, pin = Secret(code_field.value), Secret(pin_field.value)
        pin_field.value = code_field.value = ""  # the factors leave the screen now
        self.query_one("#bg-error", Label).update("")
        self.query_one("#bg-touch", Label).update(TOUCH_PROMPT)
        self._sending = True
        self._form_changed()
        self._open(profile, reason, code, pin, target)

    @work(exclusive=True, group="breakglass")
    async def _open(
        self,
        profile: str,
        reason: str,
        code: Secret,
        pin: Secret,
        target: tuple[str, str] | None,
    ) -> None:
        send = partial(self._client.request, "breakglass", profile=profile, reason=reason)
        if target is not None:
            send = partial(send, account=target[0], task=target[1])
        try:
            reply = await send(code=code.value, pin=pin.value)
            grant, exports = grant_of(reply), export_lines(reply)
        except (VaultError, OSError) as exc:
            self._failed(exc)
            return
        finally:
            self._sending = False
            if self.is_attached:  # not when leaving the screen cancelled the request
                self.query_one("#bg-touch", Label).update("")
                self._form_changed()
        self.query_one("#reason", Input).value = ""
        self.app.notify(f"break-glass grant {grant.id} opened for {grant.profile}", timeout=10)
        # The credentials came in this reply only (no op hands a grant out by id), so they
        # are shown now, once.
        self.query_one("#grant", GrantPanel).show(grant.id, grant.expires_at, exports)
        await self.run_action("app.refresh_status")

    def _failed(self, exc: VaultError | OSError) -> None:
        if isinstance(exc, VaultError):
            text = f"{exc.code}: {exc.message}"
        else:
            text = f"failed: {exc.strerror or type(exc).__name__}"
        self.query_one("#bg-error", Label).update(Text(terminal_safe(text)))

    # --- grants ----------------------------------------------------------------------------

    def _show_grants(self) -> None:
        table = self.query_one("#grants", DataTable)
        table.clear()
        now = self._clock()
        for g in self._grants:
            left = hms((g.expires_at - now).total_seconds())
            read = "yes" if g.read else "no"
            profile, reason = Text(terminal_safe(g.profile)), Text(terminal_safe(g.reason))
            table.add_row(Text(terminal_safe(g.id)), profile, left, read, reason, key=g.id)

    def _update_left(self) -> None:
        table = self.query_one("#grants", DataTable)
        now = self._clock()
        for g in self._grants:
            table.update_cell(g.id, "Left", hms((g.expires_at - now).total_seconds()))

    def _selected(self) -> GrantInfo | None:
        table = self.query_one("#grants", DataTable)
        if not self._grants or table.cursor_row >= len(self._grants):
            return None
        return self._grants[table.cursor_row]

    @on(Button.Pressed, "#end-grant")
    def _end_selected(self) -> None:
        grant = self._selected()
        if grant is not None:
            panel = self.query_one("#grant", GrantPanel)
            if panel.grant_id == grant.id:
                panel.wipe()
            self._end(grant.id)

    @on(GrantPanel.EndRequested)
    def _end_requested(self, message: GrantPanel.EndRequested) -> None:
        self._end(message.grant_id)

    @work(group="grant_end")
    async def _end(self, grant_id: str) -> None:
        try:
            await self._client.request("grant_end", id=grant_id)
        except (VaultError, OSError) as exc:
            self._failed(exc)
        else:
            self.app.notify(f"break-glass grant {grant_id} ended")
        await self.run_action("app.refresh_status")

    def action_leave(self) -> None:
        """Wipe any credentials on the screen, then go back."""
        self.query_one("#grant", GrantPanel).wipe()
        self.dismiss()
