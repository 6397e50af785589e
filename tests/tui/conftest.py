"""Fixtures for the TUI tests: a frozen clock, a FakeDaemonClient and an app factory."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from textual.pilot import Pilot
from vaultd.tui.app import VaultApp, make_app

from vaultd.testing.clock import FakeClock

from .fakes import SOCKET, FakeDaemonClient, FakeProfile

START = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
SIZE = (100, 30)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def fake(clock: FakeClock) -> FakeDaemonClient:
    return FakeDaemonClient(
        clock,
        [
            FakeProfile("admin", kind="role"),
            FakeProfile("dev", expires_at=START + timedelta(hours=1, minutes=2, seconds=3)),
            FakeProfile("ops", approval="touch"),
        ],
    )


@pytest.fixture
def app(fake: FakeDaemonClient, clock: FakeClock) -> VaultApp:
    """The app over the fake, with a fast tick and reconnect and no periodic poll."""
    return make_app(SOCKET, fake, clock=clock.now, tick=0.2, poll=3600, retry=(0.02, 0.05))


async def wait_for(pilot: Pilot[None], condition: Callable[[], object], what: str) -> None:
    """Let the app run until ``condition()`` holds (a guard against hangs, not a timing test)."""
    for _ in range(500):
        if condition():
            return
        await pilot.pause(0.01)
    raise AssertionError(f"timed out waiting for: {what}")
