"""The unlock dialog: the token PIN for a sealed daemon, sent straight to it.

The PIN field is a password field; its value is cleared the moment it is sent and never kept.
A refused PIN (``HSM_PIN_INCORRECT``, or any other error) is shown and the dialog stays open;
success dismisses it with ``True``, Escape or Cancel with ``False``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label

from vaultd.errors import VaultError

from .data import Secret

PIN_HINT = "enter the token PIN"
SENDING = "unlocking…"


class UnlockDialog(ModalScreen[bool]):
    """Ask for the token PIN and send ``unlock`` with it through ``send``."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, send: Callable[[Secret], Awaitable[object]]) -> None:
        super().__init__()
        self._send = send

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("The vault is [b]SEALED[/b]: unlock it with the token PIN", id="title")
            yield Input(placeholder="token PIN", password=True, id="pin")
            yield Label("Enter unlocks · Esc cancels", id="keys")
            yield Label("", id="hint")
            with Horizontal(id="buttons"):
                yield Button("Unlock", id="unlock", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#pin", Input).focus()

    @on(Input.Submitted, "#pin")
    @on(Button.Pressed, "#unlock")
    def _submit(self) -> None:
        field = self.query_one("#pin", Input)
        if not field.value:
            self.query_one("#hint", Label).update(PIN_HINT)
            field.focus()
            return
        pin, field.value = Secret(field.value), ""
        self.query_one("#hint", Label).update(SENDING)
        self._unlock(pin)

    @work(exclusive=True, group="unlock")
    async def _unlock(self, pin: Secret) -> None:
        try:
            await self._send(pin)
        except VaultError as exc:
            self._refused(f"{exc.code}: {exc.message}")
            return
        except OSError as exc:
            self._refused(f"failed: {exc.strerror or type(exc).__name__}")
            return
        self.dismiss(True)

    def _refused(self, text: str) -> None:
        self.query_one("#hint", Label).update(Text(text))
        self.query_one("#pin", Input).focus()

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        """Close without unlocking."""
        self.dismiss(False)
