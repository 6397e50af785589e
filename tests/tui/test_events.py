"""The audit view: the daemon's audit records (``audit_tail``), newest first, filtered, with
break-glass records highlighted; reloaded on pushed events, on a poll and on ctrl+r."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable, Label
from vaultd.tui.app import VaultApp, make_app
from vaultd.tui.approval import ApprovalDialog
from vaultd.tui.dashboard import DashboardScreen
from vaultd.tui.events import CRITICAL_STYLE, EventsScreen

from vaultd.testing.clock import FakeClock

from .conftest import SIZE, wait_for
from .fakes import SOCKET, FakeDaemonClient


def table_rows(app: VaultApp) -> list[list[str]]:
    table = app.screen.query_one("#events", DataTable)
    return [[str(c) for c in table.get_row(key)] for key in table.rows]


def styles(app: VaultApp) -> dict[str, set[str]]:
    """Event name -> the styles of its cells."""
    table = app.screen.query_one("#events", DataTable)
    out: dict[str, set[str]] = {}
    for key in table.rows:
        cells = table.get_row(key)
        assert all(isinstance(c, Text) for c in cells)
        out[str(cells[2])] = {str(c.style) for c in cells}
    return out


def fill(fake: FakeDaemonClient, clock: FakeClock) -> None:
    fake.audit("approval_denied", profile="dev", approval="a1")
    clock.advance(5)
    fake.audit(
        "breakglass_granted", profile="root", severity="critical", break_glass=True, grant="g1"
    )
    clock.advance(5)
    fake.audit("credentials_served", profile="admin", outcome="released")


async def test_audit_records_newest_first_filtered_and_highlighted(
    app: VaultApp, fake: FakeDaemonClient, clock: FakeClock
) -> None:
    fill(fake, clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.connection == "connected", "connected")
        await pilot.press("a")
        assert isinstance(app.screen, EventsScreen)
        await wait_for(pilot, lambda: len(table_rows(app)) == 3, "records")
        assert [r[:5] for r in table_rows(app)] == [
            ["2026-01-01 12:00:10", "3", "credentials_served", "admin", "released"],
            ["2026-01-01 12:00:05", "2", "breakglass_granted", "root", ""],
            ["2026-01-01 12:00:00", "1", "approval_denied", "dev", ""],
        ]
        assert table_rows(app)[1][6] == "grant=g1"
        assert styles(app)["breakglass_granted"] == {CRITICAL_STYLE}
        assert CRITICAL_STYLE not in styles(app)["approval_denied"]
        assert fake.requests("audit_tail")[0] == {"n": 200}

        await pilot.press(*"root")
        assert [r[2] for r in table_rows(app)] == ["breakglass_granted"]
        await pilot.press("ctrl+u", *"admin")
        assert [r[2] for r in table_rows(app)] == ["credentials_served"]
        await pilot.press("ctrl+u", *"dev denied")
        assert [r[2:4] for r in table_rows(app)] == [["approval_denied", "dev"]]
        await pilot.press(*" granted")  # every word must match the profile or the event
        assert table_rows(app) == []
        await pilot.press("ctrl+u", *"nobody")
        assert table_rows(app) == []

        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)


async def test_pushed_events_and_ctrl_r_reload_the_view(
    app: VaultApp, fake: FakeDaemonClient
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.connection == "connected", "connected")
        await pilot.press("a")
        await wait_for(pilot, lambda: fake.requests("audit_tail"), "first read")
        assert table_rows(app) == []
        fake.audit("approval_opened", profile="dev")
        fake.open_approval("dev")  # pushed: the view reads the log again
        await wait_for(pilot, lambda: isinstance(app.screen, ApprovalDialog), "dialog")
        await pilot.press("escape")  # deny; back on the audit view
        await wait_for(pilot, lambda: isinstance(app.screen, EventsScreen), "audit view")
        await wait_for(pilot, lambda: len(table_rows(app)) == 1, "pushed event reloads")
        fake.audit("lock", outcome="locked")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: len(table_rows(app)) == 2, "ctrl+r reloads")
        assert [r[2] for r in table_rows(app)] == ["lock", "approval_opened"]


async def test_poll_reloads_and_a_failure_keeps_the_rows(
    fake: FakeDaemonClient, clock: FakeClock
) -> None:
    app = make_app(SOCKET, fake, clock=clock.now, poll=3600, audit_poll=0.05, retry=(0.02, 0.05))
    fake.audit("lock", outcome="locked")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("a")
        await wait_for(pilot, lambda: len(table_rows(app)) == 1, "first read")
        fake.audit("unlock", outcome="unsealed")  # no event pushed: only the poll sees it
        await wait_for(pilot, lambda: len(table_rows(app)) == 2, "polled")
        fake.stop()
        state = app.screen.query_one("#audit-state", Label)
        await wait_for(pilot, lambda: "DAEMON_NOT_RUNNING" in str(state.render()), "error shown")
        assert len(table_rows(app)) == 2
