"""The one place break-glass credentials appear: a read-only text area, shown once.

The panel holds the ``export`` lines only inside its :class:`~textual.widgets.TextArea` (no
attribute, message or log keeps them).  It counts down to the grant's expiry and wipes itself
when the grant expires, when "End now" is pressed, or when it is removed from the screen.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Label, TextArea

from .data import hms

SHOWN_ONCE = (
    "SHOWN ONCE: copy these root credentials now (select, then ctrl+c); "
    "the daemon will not show them again"
)


class GrantPanel(Vertical):
    """Shows one grant's credentials with a countdown and an "End now" button."""

    class EndRequested(Message):
        """The user pressed "End now" for grant ``grant_id`` (the panel is wiped already)."""

        def __init__(self, grant_id: str) -> None:
            super().__init__()
            self.grant_id = grant_id

    def __init__(
        self, *, clock: Callable[[], datetime], tick: float, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self._clock = clock
        self._tick = tick
        self.grant_id: str | None = None
        self._expires_at: datetime | None = None

    def compose(self) -> ComposeResult:
        yield Label(SHOWN_ONCE, id="shown-once")
        yield TextArea(id="credentials", read_only=True, show_line_numbers=False)
        with Horizontal(id="grant-row"):
            yield Label("", id="grant-countdown")
            yield Button("End now", id="end-now", variant="error")

    def on_mount(self) -> None:
        self.set_interval(self._tick, self._update_countdown)

    def show(self, grant_id: str, expires_at: datetime, exports: str) -> None:
        """Show ``exports`` for ``grant_id`` until ``expires_at``."""
        self.grant_id, self._expires_at = grant_id, expires_at
        self.query_one("#credentials", TextArea).load_text(exports)
        self.display = True
        self._update_countdown()

    def wipe(self) -> None:
        """Remove the credentials from the screen."""
        self.grant_id, self._expires_at = None, None
        self.query_one("#credentials", TextArea).load_text("")
        self.query_one("#grant-countdown", Label).update("")
        self.display = False

    @property
    def showing(self) -> bool:
        """Whether credentials are on the screen."""
        return self.grant_id is not None

    def _update_countdown(self) -> None:
        if self._expires_at is None:
            return
        left = (self._expires_at - self._clock()).total_seconds()
        if left <= 0:
            self.wipe()
            self.notify("the break-glass session expired; its credentials were cleared")
            return
        self.query_one("#grant-countdown", Label).update(f"session expires in {hms(left)}")

    @on(Button.Pressed, "#end-now")
    def _end_now(self) -> None:
        grant_id = self.grant_id
        self.wipe()
        if grant_id is not None:
            self.post_message(self.EndRequested(grant_id))
