"""Snapshots of the dashboard and the approval dialog (fixed data; the FakeClock never moves)."""

from __future__ import annotations

from collections.abc import Callable

from textual.pilot import Pilot
from vaultd.tui.app import VaultApp
from vaultd.tui.approval import ApprovalDialog

from .conftest import SIZE, wait_for
from .fakes import FakeDaemonClient

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
