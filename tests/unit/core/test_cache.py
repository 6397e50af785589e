"""SessionCache: served only above the floor, judged on both the wall and monotonic clocks."""

from __future__ import annotations

from datetime import timedelta

from vaultd.core.cache import SessionCache
from vaultd.core.model import SessionCredentials
from vaultd.testing.clock import FakeClock


def session(clock: FakeClock, seconds: float, key_id: str = "ASIAONE") -> SessionCredentials:
    return SessionCredentials(key_id, "secret", "token", clock.now() + timedelta(seconds=seconds))


def test_served_until_floor_then_refused() -> None:
    clock = FakeClock()
    cache = SessionCache(clock)
    creds = session(clock, 3600)
    assert cache.put("dev", creds)
    assert cache.get("dev") is creds
    clock.advance(3600 - 900)  # exactly 15:00 left
    assert cache.get("dev") is creds
    clock.advance(1)  # 14:59 left
    assert cache.get("dev") is None
    [entry] = cache.entries()
    assert entry.key == "dev" and not entry.servable and entry.seconds_left == 899


def test_unservable_session_is_not_stored() -> None:
    clock = FakeClock()
    cache = SessionCache(clock)
    assert not cache.put("root", session(clock, 899))
    assert cache.get("root") is None
    assert cache.entries() == []


def test_wall_clock_jump_back_never_extends_use() -> None:
    clock = FakeClock()
    cache = SessionCache(clock)
    creds = session(clock, 3600)
    cache.put("dev", creds)
    clock.advance(2600)  # 1000 s left by STS
    clock.jump_wall(-3600)  # wall now says 4600 s left
    assert cache.get("dev") is creds
    [entry] = cache.entries()
    assert entry.seconds_left == 1000
    clock.advance(101)  # 899 s left by STS, 4499 by the stepped-back wall clock
    assert cache.get("dev") is None
    clock.advance(900)
    assert cache.get("dev") is None
    assert cache.entries() == []


def test_wall_clock_jump_forward_shortens_use() -> None:
    clock = FakeClock()
    cache = SessionCache(clock)
    cache.put("dev", session(clock, 3600))
    clock.jump_wall(2701)
    assert cache.get("dev") is None


def test_configured_floor_is_honoured_and_never_lowered() -> None:
    clock = FakeClock()
    high = SessionCache(clock, floor=1800)
    assert not high.put("dev", session(clock, 1799))
    low = SessionCache(clock, floor=60)
    assert not low.put("dev", session(clock, 899))


def test_refresh_window() -> None:
    clock = FakeClock()
    cache = SessionCache(clock)
    assert cache.needs_refresh("dev")
    cache.put("dev", session(clock, 3600))
    assert not cache.needs_refresh("dev")
    clock.advance(2401)
    assert cache.needs_refresh("dev")
    assert cache.get("dev") is not None  # still servable while a refresh runs


def test_purge_wipe_and_entries_have_no_secrets() -> None:
    clock = FakeClock()
    cache = SessionCache(clock)
    cache.put("b", session(clock, 3600, "ASIATWO"))
    cache.put("a", session(clock, 7200))
    assert [e.key for e in cache.entries()] == ["a", "b"]
    assert "secret" not in repr(cache.entries()) and "token" not in repr(cache.entries())
    cache.purge("a")
    cache.purge("missing")
    assert cache.get("a") is None and cache.get("b") is not None
    cache.wipe()
    assert cache.get("b") is None and cache.entries() == []


def test_put_replaces_entry() -> None:
    clock = FakeClock()
    cache = SessionCache(clock)
    cache.put("dev", session(clock, 1000))
    fresh = session(clock, 3600, "ASIATWO")
    cache.put("dev", fresh)
    clock.advance(500)
    assert cache.get("dev") is fresh


def test_an_unused_session_is_dropped_at_the_idle_limit() -> None:
    """docs/threat-model.md T23: expiry at the idle limit without use."""
    clock = FakeClock()
    cache = SessionCache(clock, idle_seconds=600)
    creds = session(clock, 3600)
    cache.put("dev", creds)
    clock.advance(599)
    assert [e.key for e in cache.entries()] == ["dev"]  # looking does not count as use
    clock.advance(1)
    assert cache.entries() == []
    assert cache.get("dev") is None
    assert cache.needs_refresh("dev")


def test_constant_use_lasts_until_the_absolute_limit_only() -> None:
    """docs/threat-model.md T23: with constant use, expiry at the absolute limit (the serving
    floor)."""
    clock = FakeClock()
    cache = SessionCache(clock, idle_seconds=600)
    creds = session(clock, 3600)
    cache.put("dev", creds)
    for _ in range(4):
        clock.advance(599)
        assert cache.get("dev") is creds  # each use restarts the idle time
    clock.advance(3600 - 900 - 4 * 599)  # exactly the floor left
    assert cache.get("dev") is creds
    clock.advance(1)
    assert cache.get("dev") is None


def test_idle_time_runs_on_the_monotonic_clock() -> None:
    clock = FakeClock()
    cache = SessionCache(clock, idle_seconds=600)
    creds = session(clock, 3600)
    cache.put("dev", creds)
    clock.jump_wall(-3600)  # the wall clock going back gives no extra idle time
    clock.advance(600)
    assert cache.get("dev") is None
