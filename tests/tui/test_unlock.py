"""The unlock dialog: offered only while sealed; a wrong PIN keeps it open with the error."""

from __future__ import annotations

from textual.widgets import Input, Label, Static
from textual.widgets._footer import FooterKey
from vaultd.tui.app import VaultApp
from vaultd.tui.dashboard import DashboardScreen
from vaultd.tui.unlock import PIN_HINT, UnlockDialog

from .conftest import SIZE, wait_for
from .fakes import TOKEN_PIN, FakeDaemonClient


def daemon_line(app: VaultApp) -> str:
    return str(app.screen.query_one("#daemon", Static).render())


def hint(app: VaultApp) -> str:
    return str(app.screen.query_one("#hint", Label).render())


def footer_keys(app: VaultApp) -> set[str]:
    return {k.key for k in app.screen.query(FooterKey)}


async def test_wrong_then_right_pin(app: VaultApp, fake: FakeDaemonClient) -> None:
    fake.sealed = True
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "SEALED" in daemon_line(app), "sealed shown")
        await wait_for(pilot, lambda: "u" in footer_keys(app), "unlock offered")
        await pilot.press("u")
        assert isinstance(app.screen, UnlockDialog)
        field = app.screen.query_one("#pin", Input)
        assert field.password and app.focused is field

        await pilot.press("enter")  # nothing typed: nothing sent
        assert hint(app) == PIN_HINT and fake.requests("unlock") == []

        await pilot.press(*"0000", "enter")
        await wait_for(pilot, lambda: hint(app).startswith("HSM_PIN_INCORRECT: "), "refused")
        assert isinstance(app.screen, UnlockDialog)
        assert field.value == "" and app.focused is field
        assert "0000" not in hint(app)

        await pilot.press(*TOKEN_PIN)
        await pilot.click("#unlock")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), "dialog closed")
        await wait_for(pilot, lambda: "unsealed" in daemon_line(app), "unsealed shown")
        assert fake.requests("unlock") == [
            {"pin": "0000"},
            {"pin": TOKEN_PIN},
        ]
        assert not fake.sealed
        await wait_for(pilot, lambda: "u" not in footer_keys(app), "unlock no longer offered")
        assert not any(TOKEN_PIN in str(n.message) for n in app._notifications)


async def test_escape_cancels_and_u_does_nothing_when_unsealed(
    app: VaultApp, fake: FakeDaemonClient
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "unsealed" in daemon_line(app), "status")
        assert "u" not in footer_keys(app)
        await pilot.press("u")
        assert isinstance(app.screen, DashboardScreen)
        fake.sealed = True
        await pilot.press("r")
        await wait_for(pilot, lambda: "SEALED" in daemon_line(app), "sealed shown")
        await pilot.press("u", *"12", "escape")
        assert isinstance(app.screen, DashboardScreen)
        assert fake.requests("unlock") == [] and fake.sealed
