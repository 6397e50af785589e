"""The unlock dialog at a token's final PIN try (docs/threat-model.md T9, F27).

The daemon is the TUI tests' FakeDaemonClient (the TUI needs a daemon whose token state the
test controls; requests, errors and replies still go through the real codec), extended here
with a token at FINAL_TRY: an ``unlock`` without the answer to its challenge gets
``HSM_PIN_FINAL_TRY`` (with the challenge :data:`WORDS`) without a login, an answered one is one
login. The real daemon's side is in
``tests/adversarial/test_token_store.py``.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Label, Static
from vaultd.tui.app import VaultApp
from vaultd.tui.dashboard import DashboardScreen
from vaultd.tui.unlock import CONFIRM_HINT, UnlockDialog

from vaultd.errors import HsmPinFinalTry, HsmPinLocked
from vaultd.testing.clock import FakeClock

from .conftest import SIZE, wait_for
from .fakes import TOKEN_PIN, FakeDaemonClient, FakeProfile


class FinalTryDaemon(FakeDaemonClient):
    """The fake daemon, sealed, with a token at its final PIN try; counts C_Login calls."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock, [FakeProfile("dev")])
        self.sealed = True
        self.final_try = True
        self.locked = False
        self.logins = 0

    async def _handle(self, op: str, fields: Mapping[str, object]) -> Mapping[str, object] | bytes:
        if op != "unlock":
            return await super()._handle(op, fields)
        if self.locked:
            raise HsmPinLocked("the user PIN is locked; reset it with the SO PIN")
        if self.final_try and fields.get("final_try_answer") != WORDS:
            raise HsmPinFinalTry(
                "the token is at its final PIN try; no login was tried", challenge=WORDS
            )
        self.logins += 1
        if fields["pin"] != TOKEN_PIN:
            self.locked = True
            raise HsmPinLocked("the user PIN is locked; reset it with the SO PIN")
        self.final_try = False
        return await super()._handle(op, fields)


WORDS = "otter maple zebra"
"""The fake daemon's final-try challenge."""


@pytest.fixture
def fake(clock: FakeClock) -> FinalTryDaemon:
    return FinalTryDaemon(clock)


def keys(text: str) -> list[str]:
    return ["space" if c == " " else c for c in text]


def hint(app: VaultApp) -> str:
    return str(app.screen.query_one("#hint", Label).render())


def daemon_line(app: VaultApp) -> str:
    return str(app.screen.query_one("#daemon", Static).render())


async def open_at_final_try(
    app: VaultApp, fake: FinalTryDaemon, pilot: Pilot[None]
) -> UnlockDialog:
    """Open the dialog and send the PIN once: the daemon answers HSM_PIN_FINAL_TRY."""
    await wait_for(pilot, lambda: "SEALED" in daemon_line(app), "sealed shown")
    await pilot.press("u")
    dialog = app.screen
    assert isinstance(dialog, UnlockDialog)
    confirm = dialog.query_one("#confirm", Input)
    assert not confirm.display and not dialog.query_one("#final-warning", Label).display
    await pilot.press(*TOKEN_PIN, "enter")
    await wait_for(pilot, lambda: hint(app).startswith("HSM_PIN_FINAL_TRY: "), "final try")
    assert dialog.final_try and confirm.display
    warning = str(dialog.query_one("#final-warning", Label).render())
    assert "FINAL PIN TRY" in warning and WORDS in warning
    assert fake.requests("unlock") == [{"pin": TOKEN_PIN}]
    assert fake.logins == 0
    pin = dialog.query_one("#pin", Input)
    assert pin.value == "" and app.focused is pin
    return dialog


async def test_final_try_is_sent_only_with_the_challenge_words(
    app: VaultApp, fake: FinalTryDaemon
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_at_final_try(app, fake, pilot)
        confirm = dialog.query_one("#confirm", Input)

        await pilot.press(*TOKEN_PIN, "enter")  # the PIN alone is not enough
        assert hint(app) == CONFIRM_HINT and app.focused is confirm
        await pilot.press(*keys("final try"), "enter")  # nor the old phrase
        assert hint(app) == CONFIRM_HINT
        confirm.value = ""
        await pilot.press(*keys(WORDS[:-1]), "enter")  # nor a near miss
        assert hint(app) == CONFIRM_HINT
        assert len(fake.requests("unlock")) == 1 and fake.logins == 0

        await pilot.press("a", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), "dialog closed")
        assert fake.requests("unlock")[1:] == [{"pin": TOKEN_PIN, "final_try_answer": WORDS}]
        assert fake.logins == 1 and not fake.sealed
        assert not any(TOKEN_PIN in str(n.message) for n in app._notifications)


async def test_escape_cancels_without_spending_the_final_try(
    app: VaultApp, fake: FinalTryDaemon
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await open_at_final_try(app, fake, pilot)
        await pilot.press(*TOKEN_PIN, "tab", *keys(WORDS), "escape")
        assert isinstance(app.screen, DashboardScreen)
        assert len(fake.requests("unlock")) == 1
        assert fake.logins == 0 and fake.sealed


async def test_a_confirmed_wrong_pin_shows_the_lock(app: VaultApp, fake: FinalTryDaemon) -> None:
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_at_final_try(app, fake, pilot)
        await pilot.press(*"0000", "tab", *keys(WORDS), "enter")
        await wait_for(pilot, lambda: hint(app).startswith("HSM_PIN_LOCKED: "), "locked shown")
        assert fake.logins == 1 and fake.locked and fake.sealed
        assert not dialog.final_try and not dialog.query_one("#confirm", Input).display
        assert dialog.query_one("#confirm", Input).value == ""
