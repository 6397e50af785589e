"""Serving floor, refresh timing, STS duration ranges, Expiration checks, approval timeouts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from vaultd.core import serving
from vaultd.core.model import ProfileKind, SessionCredentials
from vaultd.errors import ConfigError, StsError

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def creds(seconds_left: float) -> SessionCredentials:
    return SessionCredentials("ASIAEXAMPLE", "s", "t", NOW + timedelta(seconds=seconds_left))


@pytest.mark.parametrize(("left", "ok"), [(14 * 60 + 59, False), (15 * 60, True), (-1, False)])
def test_floor_boundary(left: int, ok: bool) -> None:
    assert serving.servable(creds(left), NOW) is ok


def test_configured_floor_may_be_higher_never_lower() -> None:
    assert serving.effective_floor(None) == 900
    assert serving.effective_floor(60) == 900
    assert serving.effective_floor(1800) == 1800
    assert not serving.servable(creds(1700), NOW, floor=1800)
    assert not serving.servable(creds(899), NOW, floor=0)


def test_refresh_ahead_of_the_floor() -> None:
    assert not serving.needs_refresh(creds(1200), NOW)
    assert serving.needs_refresh(creds(1199), NOW)
    assert serving.needs_refresh(creds(100), NOW)
    assert serving.needs_refresh(creds(2099), NOW, floor=1800)


@pytest.mark.parametrize(
    ("kind", "chained", "seconds", "expected"),
    [
        (ProfileKind.SESSION, False, None, 43200),
        (ProfileKind.SESSION, False, 900, 900),
        (ProfileKind.SESSION, False, 129600, 129600),
        (ProfileKind.ROOT, False, None, 900),
        (ProfileKind.ROOT, False, 3600, 3600),
        (ProfileKind.ROLE, False, None, 3600),
        (ProfileKind.ROLE, False, 43200, 43200),
        (ProfileKind.ROLE, True, 3600, 3600),
        (ProfileKind.ROLE, True, None, 3600),
    ],
)
def test_durations_accepted(
    kind: ProfileKind, chained: bool, seconds: int | None, expected: int
) -> None:
    assert serving.validate_duration(kind, seconds, chained=chained) == expected


@pytest.mark.parametrize(
    ("kind", "chained", "seconds", "limits"),
    [
        (ProfileKind.SESSION, False, 899, "900 to 129600"),
        (ProfileKind.SESSION, False, 129601, "900 to 129600"),
        (ProfileKind.ROOT, False, 3601, "900 to 3600"),
        (ProfileKind.ROOT, False, 899, "900 to 3600"),
        (ProfileKind.ROLE, False, 43201, "900 to 43200"),
        (ProfileKind.ROLE, True, 3601, "900 to 3600"),
        (ProfileKind.ROLE, False, True, "900 to 43200"),
    ],
)
def test_durations_refused_name_field_and_range(
    kind: ProfileKind, chained: bool, seconds: int, limits: str
) -> None:
    with pytest.raises(ConfigError) as info:
        serving.validate_duration(
            kind, seconds, chained=chained, field="profiles.dev.duration_seconds"
        )
    assert "profiles.dev.duration_seconds" in str(info.value)
    assert limits in str(info.value)
    assert info.value.code == "CONFIG_INVALID"


def test_role_chaining_switch() -> None:
    assert serving.role_uses_chaining(3600)
    assert not serving.role_uses_chaining(3601)


def test_expiration_accepted_and_normalised_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    value = serving.validate_expiration(datetime(2026, 1, 1, 15, 0, tzinfo=plus_two), NOW)
    assert value == NOW + timedelta(hours=1)
    assert value.tzinfo == UTC
    assert serving.validate_expiration("2026-01-01T13:00:00Z", NOW) == NOW + timedelta(hours=1)


@pytest.mark.parametrize(
    "bad",
    [
        NOW - timedelta(seconds=1),
        NOW,
        datetime(2026, 1, 1, 13, 0),  # naive
        "2026-01-01T13:00:00",  # naive string
        "not a date",
        "",
        NOW + timedelta(days=3),
    ],
)
def test_expiration_refused(bad: datetime | str) -> None:
    with pytest.raises(StsError) as info:
        serving.validate_expiration(bad, NOW)
    assert type(info.value) is StsError


@pytest.mark.parametrize(("given", "expected"), [(None, 50.0), (55, 55.0), (5, 5.0), (30.5, 30.5)])
def test_approval_timeout_accepted(given: float | None, expected: float) -> None:
    assert serving.validate_approval_timeout(given) == expected


@pytest.mark.parametrize("bad", [55.01, 60, 4.9, 0, -1, float("nan"), float("inf")])
def test_approval_timeout_refused(bad: float) -> None:
    with pytest.raises(ConfigError, match=r"gates\.approval_timeout"):
        serving.validate_approval_timeout(bad, field="gates.approval_timeout")
