"""The events view: newest first, filtered by profile and event name."""

from __future__ import annotations

from textual.widgets import DataTable
from vaultd.tui.app import VaultApp
from vaultd.tui.approval import ApprovalDialog
from vaultd.tui.dashboard import DashboardScreen
from vaultd.tui.events import EventsScreen

from vaultd.testing.clock import FakeClock

from .conftest import SIZE, wait_for
from .fakes import FakeDaemonClient


def table_rows(app: VaultApp) -> list[list[str]]:
    table = app.screen.query_one("#events", DataTable)
    return [[str(c) for c in table.get_row(key)] for key in table.rows]


async def test_events_newest_first_and_filtered(
    app: VaultApp, fake: FakeDaemonClient, clock: FakeClock
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.connection == "connected", "connected")
        for n, profile in enumerate(("dev", "admin")):
            approval = fake.open_approval(profile)
            await wait_for(pilot, lambda n=n: len(app.log_entries) == 2 * n + 1, "opened")
            clock.advance(5)
            fake.book.deny(approval.id)  # answered elsewhere (`vaultd deny`)
            await wait_for(pilot, lambda n=n: len(app.log_entries) == 2 * n + 2, "resolved")
            clock.advance(5)
        await wait_for(pilot, lambda: not isinstance(app.screen, ApprovalDialog), "no dialog")
        await pilot.press("a")
        assert isinstance(app.screen, EventsScreen)
        rows = table_rows(app)
        assert [r[:3] for r in rows] == [
            ["12:00:15", "approval_resolved", "admin"],
            ["12:00:10", "approval_opened", "admin"],
            ["12:00:05", "approval_resolved", "dev"],
            ["12:00:00", "approval_opened", "dev"],
        ]
        assert "denied" in rows[0][3] and "aws s3 ls" in rows[0][3]

        await pilot.press(*"admin")
        assert [r[1:3] for r in table_rows(app)] == [
            ["approval_resolved", "admin"],
            ["approval_opened", "admin"],
        ]
        await pilot.press(*" opened")
        assert [r[1:3] for r in table_rows(app)] == [["approval_opened", "admin"]]
        await pilot.press("ctrl+u")  # clear the filter
        await pilot.press(*"nobody")
        assert table_rows(app) == []

        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)


async def test_new_events_appear_while_the_view_is_open(
    app: VaultApp, fake: FakeDaemonClient
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.connection == "connected", "connected")
        await pilot.press("a")
        await pilot.press(*"dev")
        fake.open_approval("admin")
        fake.open_approval("dev")
        await wait_for(pilot, lambda: len(app.log_entries) == 2, "events")
        await pilot.press("escape")  # deny the admin dialog
        await wait_for(pilot, lambda: fake.requests("deny"), "deny")
        await pilot.press("escape")  # deny the dev dialog
        await wait_for(pilot, lambda: isinstance(app.screen, EventsScreen), "events view")
        await wait_for(pilot, lambda: len(table_rows(app)) == 3, "dev events")
        assert sorted(r[1] for r in table_rows(app)) == [
            "approval_opened",
            "approval_resolved",
            "denied",
        ]
        assert {r[2] for r in table_rows(app)} == {"dev"}
