"""The approval dialog: who asks for which profile, a countdown, and the 6-digit MFA code.

Deny by default: Escape and Deny deny, an untouched dialog never approves, and focus starts on
the code field (or on Deny for a touch), never on Approve.  When the approval expires the dialog
closes by itself (the daemon times it out too).  The typed code leaves in the dialog's result
and is cleared from the field; nothing here keeps it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Literal

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from vaultd.core.model import CODE_RE
from vaultd.core.termtext import terminal_safe

from .data import PendingApproval, hms

Verdict = Literal["approve", "deny", "expired", "closed"]

CODE_HINT = "enter the 6-digit code"
TOUCH_HINT = "touch your security key"


@dataclass(frozen=True, slots=True)
class ApprovalAnswer:
    """The dialog's result: what the user decided about approval ``approval_id``."""

    approval_id: str
    verdict: Verdict
    code: str | None = field(default=None, repr=False)


def _safe(value: str) -> str:
    return escape(terminal_safe(value))


def _describe(approval: PendingApproval) -> str:
    """The request in markup; every value from the requester is escaped (it is untrusted):
    markup and terminal escapes alike."""
    program = _safe(approval.parent_command or "(unknown program)")
    lines = [
        f"Profile    [b]{_safe(approval.profile)}[/b]",
        f"Wants      {_safe(approval.action)} → AWS session credentials",
        f"MFA device {_safe(approval.mfa_serial or '(none)')}",
        f"Program    {program} (pid {approval.parent_pid})",
        f"Directory  {_safe(approval.cwd or '(unknown)')}",
        f"Client     pid {approval.pid} {_safe(approval.executable or '(unknown executable)')}",
    ]
    return "\n".join(lines)


def _joined(approval: PendingApproval) -> str:
    """The processes that joined the request, one escaped line each (they get the session too)."""
    lines = [
        f"also waiting: pid {j.pid} ({_safe(j.executable or 'unknown executable')})"
        for j in approval.joined
    ]
    if approval.joined_more:
        lines.append(f"and {approval.joined_more} more processes")
    return "\n".join(lines)


class ApprovalDialog(ModalScreen[ApprovalAnswer]):
    """Approve or deny one pending approval."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "deny", "Deny")]

    def __init__(
        self,
        approval: PendingApproval,
        *,
        clock: Callable[[], datetime],
        tick: float,
        position: tuple[int, int] = (1, 1),
    ) -> None:
        super().__init__()
        self.approval = approval
        self._clock = clock
        self._tick = tick
        self._position = position
        self._answered = False

    def compose(self) -> ComposeResult:
        approval = self.approval
        with Vertical(id="dialog"):
            yield Label("", id="queue")
            yield Label(f"Release credentials for [b]{_safe(approval.profile)}[/b]?", id="title")
            yield Static(_describe(approval), id="details", markup=True)
            yield Static(id="joined", markup=True)
            yield Label("", id="countdown")
            if approval.takes_touch:
                yield Label(TOUCH_HINT, id="touch")
            if approval.takes_code:
                yield Input(
                    placeholder="6-digit MFA code",
                    restrict=r"[0-9]{0,6}",
                    max_length=6,
                    id="code",
                )
            keys = (
                "Enter approves with the code · Esc denies" if approval.takes_code else "Esc denies"
            )
            yield Label(keys, id="keys")
            yield Label("", id="hint")
            with Horizontal(id="buttons"):
                if approval.takes_code:
                    yield Button("Approve", id="approve", variant="success")
                yield Button("Deny", id="deny", variant="error")

    def on_mount(self) -> None:
        self.set_position(*self._position)
        self.show_joined(self.approval)
        self._update_countdown()
        self.set_interval(self._tick, self._update_countdown)
        if self.approval.takes_code:
            code = self.query_one("#code", Input)
            code.cursor_blink = False
            code.focus()
        else:
            self.query_one("#deny", Button).focus()

    def set_position(self, index: int, total: int) -> None:
        """Show where this approval stands in the queue ("1 of 3")."""
        self._position = (index, total)
        text = f"request {index} of {total}" if total > 1 else ""
        for label in self.query("#queue").results(Label):
            label.update(text)

    def show_joined(self, approval: PendingApproval) -> None:
        """Show the processes that joined this approval since it opened."""
        self.approval = approval
        joined = self.query_one("#joined", Static)
        joined.update(_joined(approval))
        joined.display = bool(approval.joined or approval.joined_more)

    def _update_countdown(self) -> None:
        left = (self.approval.expires_at - self._clock()).total_seconds()
        if left <= 0:
            self._finish("expired")
            return
        self.query_one("#countdown", Label).update(f"expires in {hms(left)}")

    def _finish(self, verdict: Verdict, code: str | None = None) -> None:
        if self._answered or not self.is_current:
            return
        self._answered = True
        self.dismiss(ApprovalAnswer(self.approval.id, verdict, code))

    def _approve_with_typed_code(self) -> None:
        field = self.query_one("#code", Input)
        code = field.value
        if not CODE_RE.fullmatch(code):
            self.query_one("#hint", Label).update(CODE_HINT)
            field.focus()
            return
        field.value = ""
        self._finish("approve", code)

    @on(Input.Changed, "#code")
    def _code_changed(self) -> None:
        self.query_one("#hint", Label).update("")

    @on(Input.Submitted, "#code")
    def _code_submitted(self) -> None:
        self._approve_with_typed_code()

    @on(Button.Pressed, "#approve")
    def _approve_pressed(self) -> None:
        self._approve_with_typed_code()

    @on(Button.Pressed, "#deny")
    def _deny_pressed(self) -> None:
        self._finish("deny")

    def action_deny(self) -> None:
        """Deny (Escape)."""
        self._finish("deny")

    def close(self) -> None:
        """Close without an answer (the approval was resolved elsewhere)."""
        self._finish("closed")
