"""The unlock dialog: the token PIN for a sealed daemon, sent straight to it.

The PIN field is a password field; its value is cleared the moment it is sent and never kept.
A refused PIN (``HSM_PIN_INCORRECT``, or any other error) is shown and the dialog stays open;
success dismisses it with ``True``, Escape or Cancel with ``False``.

A token at its final PIN try (``HSM_PIN_FINAL_TRY``, docs/threat-model.md T9) is never logged into
without the person's say-so: the dialog shows the warning with the daemon's one-time challenge
(a few words) and a second field, and sends the PIN again with the typed words as
``final_try_answer`` only once they match (a typo is caught here, not spent on the daemon).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ClassVar, Final

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label

from vaultd.errors import HsmPinFinalTry, VaultError

from .data import Secret

PIN_HINT = "enter the token PIN"
SENDING = "unlocking…"
FINAL_TRY_WARNING: Final = (
    "[b]FINAL PIN TRY[/b]: one more wrong PIN locks the token (only its SO PIN can reset it). "
    "Re-enter the PIN and type these words below to send it; Esc cancels:\n"
)
CONFIRM_HINT: Final = "type the words shown exactly to use the final PIN try"

Send = Callable[[Secret, str | None], Awaitable[object]]
"""Sends ``unlock`` with the PIN and the typed final-try words (None before any challenge)."""


class UnlockDialog(ModalScreen[bool]):
    """Ask for the token PIN and send ``unlock`` with it through ``send``."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, send: Send) -> None:
        super().__init__()
        self._send = send
        self._challenge: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("The vault is [b]SEALED[/b]: unlock it with the token PIN", id="title")
            yield Input(placeholder="token PIN", password=True, id="pin")
            yield Label(FINAL_TRY_WARNING, id="final-warning")
            yield Input(placeholder="type the words shown above", id="confirm")
            yield Label("Enter unlocks · Esc cancels", id="keys")
            yield Label("", id="hint")
            with Horizontal(id="buttons"):
                yield Button("Unlock", id="unlock", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self._show_final_try(None)
        self.query_one("#pin", Input).focus()

    @property
    def final_try(self) -> bool:
        """True once the daemon said the token is at its final PIN try."""
        return self._challenge is not None

    def _show_final_try(self, challenge: str | None) -> None:
        self._challenge = challenge
        warning = self.query_one("#final-warning", Label)
        warning.update(Text.from_markup(FINAL_TRY_WARNING) + Text(challenge or "", style="bold"))
        warning.display = self.query_one("#confirm", Input).display = challenge is not None

    @on(Input.Submitted, "#pin")
    @on(Input.Submitted, "#confirm")
    @on(Button.Pressed, "#unlock")
    def _submit(self) -> None:
        field = self.query_one("#pin", Input)
        confirm = self.query_one("#confirm", Input)
        if not field.value:
            self.query_one("#hint", Label).update(PIN_HINT)
            field.focus()
            return
        answer = " ".join(confirm.value.lower().split())
        if self._challenge is not None and answer != self._challenge:
            self.query_one("#hint", Label).update(CONFIRM_HINT)
            confirm.focus()
            return
        pin, field.value, confirm.value = Secret(field.value), "", ""
        self.query_one("#hint", Label).update(SENDING)
        self._unlock(pin, answer if self._challenge is not None else None)

    @work(exclusive=True, group="unlock")
    async def _unlock(self, pin: Secret, final_try_answer: str | None) -> None:
        try:
            await self._send(pin, final_try_answer)
        except HsmPinFinalTry as exc:
            self._show_final_try(exc.challenge)
            self._refused(f"{exc.code}: {exc.message}")
            return
        except VaultError as exc:
            self._show_final_try(None)
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
