"""Snapshots of the dashboard, the approval dialog and the break-glass screen (fixed data; the
FakeClock never moves; no snapshot ever holds credentials)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from textual.pilot import Pilot
from textual.widgets import Input, Select
from vaultd.tui.app import VaultApp
from vaultd.tui.approval import ApprovalDialog
from vaultd.tui.breakglass import BreakGlassScreen

from vaultd.testing.clock import FakeClock

from .conftest import SIZE, wait_for
from .fakes import FakeDaemonClient, FakeGrant, FakeProfile

SnapCompare = Callable[..., bool]


def test_dashboard_snapshot(snap_compare: SnapCompare, app: VaultApp) -> None:
    async def loaded(pilot: Pilot[None]) -> None:
        await wait_for(pilot, lambda: app.daemon_status is not None, "status")
        await wait_for(pilot, lambda: app.connection == "connected", "connected")

    assert snap_compare(app, terminal_size=SIZE, run_before=loaded)


def test_approval_dialog_snapshot(
    snap_compare: SnapCompare, app: VaultApp, fake: FakeDaemonClient
) -> None:
    fake.open_approval("dev")
    fake.open_approval("admin")

    async def dialog_up(pilot: Pilot[None]) -> None:
        await wait_for(pilot, lambda: isinstance(app.screen, ApprovalDialog), "dialog")
        await wait_for(pilot, lambda: app.connection == "connected", "connected")
        await pilot.press(*"123")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=dialog_up)


def test_break_glass_screen_snapshot(
    snap_compare: SnapCompare, app: VaultApp, fake: FakeDaemonClient, clock: FakeClock
) -> None:
    """The form filled but for the PIN (labelled required, and asked for) and the last code
    digits, an earlier grant listed; no credentials."""
    fake.profiles.append(FakeProfile("root", root=True))
    expires = clock.now() + timedelta(minutes=10)
    fake.grants["k3v9x2m7q1"] = FakeGrant("k3v9x2m7q1", "root", "rotate leaked key", expires)

    async def filled(pilot: Pilot[None]) -> None:
        await wait_for(pilot, lambda: app.daemon_status is not None, "status")
        await wait_for(pilot, lambda: app.connection == "connected", "connected")
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, BreakGlassScreen), "screen")
        app.screen.query_one("#profile", Select).value = "root"
        app.screen.query_one("#reason", Input).value = "MFA device lost"
        app.screen.query_one("#code", Input).focus()
        await pilot.press(*"246")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=filled)
