"""Dashboard, key bindings, mouse and reconnection, with Pilot over the FakeDaemonClient."""

from __future__ import annotations

from textual.widgets import DataTable
from textual.widgets._footer import FooterKey
from vaultd.tui.app import VaultApp
from vaultd.tui.dashboard import DashboardScreen

from vaultd.testing.clock import FakeClock

from .conftest import SIZE, wait_for
from .fakes import FakeDaemonClient


def rows(app: VaultApp) -> dict[str, list[str]]:
    table = app.screen.query_one("#profiles", DataTable)
    return {str(key.value): [str(c) for c in table.get_row(key)] for key in table.rows}


def text(app: VaultApp, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


async def test_dashboard_lists_profiles_and_daemon_state(app: VaultApp, clock: FakeClock) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: len(rows(app)) == 3, "profiles shown")
        assert isinstance(app.screen, DashboardScreen)
        assert rows(app) == {
            "admin": ["admin", "role", "code", "none", "-"],
            "dev": ["dev", "session", "code", "active", "1:02:03"],
            "ops": ["ops", "session", "touch", "none", "-"],
        }
        assert "vaultd pid 31337 · token vaultd · unsealed" in text(app, "#daemon")
        assert text(app, "#connection") == "connected"


async def test_countdown_ticks_locally_from_expiry(app: VaultApp, clock: FakeClock) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: rows(app).get("dev", [""])[-1] == "1:02:03", "countdown")
        calls = len(app.client.calls)  # type: ignore[attr-defined]
        clock.advance(1)
        await wait_for(pilot, lambda: rows(app)["dev"][-1] == "1:02:02", "one second less")
        clock.advance(3723)
        await wait_for(pilot, lambda: rows(app)["dev"][3:] == ["expired", "-"], "expired")
        assert len(app.client.calls) == calls  # type: ignore[attr-defined]


async def test_l_sends_lock_and_sessions_drop(app: VaultApp, fake: FakeDaemonClient) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: rows(app).get("dev", [""])[3] == "active", "session")
        await pilot.press("l")
        await wait_for(pilot, lambda: rows(app)["dev"][3] == "none", "session dropped")
        assert fake.requests("lock") == [{}]


async def test_r_refreshes_status(app: VaultApp, fake: FakeDaemonClient) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "unsealed" in text(app, "#daemon"), "status")
        fake.sealed = True
        await pilot.press("r")
        await wait_for(pilot, lambda: "SEALED" in text(app, "#daemon"), "sealed shown")


async def test_mouse_click_on_footer_lock(app: VaultApp, fake: FakeDaemonClient) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: len(rows(app)) == 3, "profiles shown")
        lock = next(k for k in app.screen.query(FooterKey) if k.key == "l")
        await pilot.click(lock)
        await wait_for(pilot, lambda: fake.requests("lock") == [{}], "lock sent by a click")


async def test_reconnects_after_daemon_not_running(app: VaultApp, fake: FakeDaemonClient) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: text(app, "#connection") == "connected", "connected")
        fake.stop()
        await wait_for(
            pilot,
            lambda: text(app, "#connection").startswith("daemon disconnected — retrying"),
            "disconnected shown",
        )
        failed = len(fake.requests("status"))
        fake.start()
        await wait_for(pilot, lambda: text(app, "#connection") == "reconnected", "reconnected")
        assert len(fake.requests("status")) > failed
        assert len(fake.requests("events")) == 2


async def test_starts_before_the_daemon_and_connects_when_it_comes(
    app: VaultApp, fake: FakeDaemonClient
) -> None:
    fake.stop()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(
            pilot, lambda: "daemon disconnected" in text(app, "#connection"), "not running"
        )
        assert rows(app) == {}
        fake.start()
        await wait_for(pilot, lambda: len(rows(app)) == 3, "profiles after start")
        assert text(app, "#connection") == "reconnected"


async def test_a_cooldown_counts_down_and_c_ends_it(
    app: VaultApp, fake: FakeDaemonClient, clock: FakeClock
) -> None:
    fake.cooldowns = {"ops": 25}
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(
            pilot, lambda: rows(app).get("ops", [""] * 4)[3] == "denied, 25s (c)", "cooldown"
        )
        assert rows(app)["dev"][3] == "active"
        clock.advance(5)
        await wait_for(pilot, lambda: rows(app)["ops"][3] == "denied, 20s (c)", "counts down")
        await pilot.press("down", "down", "c")
        await wait_for(pilot, lambda: rows(app)["ops"][3] == "none", "cooldown ended")
        assert fake.requests("approvals") == [{"clear_cooldown": "ops"}]


async def test_an_answered_request_shows_its_progress(
    app: VaultApp, fake: FakeDaemonClient
) -> None:
    message = "touch received, waiting 13 s for the next code (AWS accepts each code once)"
    fake.in_progress = [
        {"id": "a1", "profile": "ops", "state": "next_code_wait", "message": message}
    ]
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: len(rows(app)) == 3, "profiles shown")
        assert rows(app)["ops"][3] == "next code (touched)"
        fake.in_progress = [{**fake.in_progress[0], "state": "calling_sts"}]
        await pilot.press("r")
        await wait_for(pilot, lambda: rows(app)["ops"][3] == "calling STS", "calling STS")
