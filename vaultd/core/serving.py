"""Serving policy: the expiry floor, refresh timing, STS duration ranges and approval timeouts.

Pure constants and functions (docs/threat-model.md T15, AWS contract).  Callers pass the time in;
nothing here reads a clock.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from vaultd.core.model import ProfileKind, SessionCredentials, utc
from vaultd.errors import ConfigError, StsError

SERVE_FLOOR_SECONDS = 900
"""Serve a session only while at least this many seconds remain (botocore's advisory window)."""

REFRESH_AHEAD_SECONDS = 1200
"""Refresh a cached session once fewer than this many seconds remain, before it hits the floor."""

MIN_DURATION_SECONDS = 900
SESSION_MAX_SECONDS = 129_600
SESSION_DEFAULT_SECONDS = 43_200
ROOT_MAX_SECONDS = 3_600
ROOT_DEFAULT_SECONDS = 900
ROLE_MAX_SECONDS = 43_200
ROLE_DEFAULT_SECONDS = 3_600
CHAINED_MAX_SECONDS = 3_600

EXPIRATION_SKEW_SECONDS = 900
"""Slack allowed past the longest STS session before an ``Expiration`` counts as malformed."""

MAX_APPROVAL_TIMEOUT = 55.0
"""Upper bound for an approval: the Go SDK kills ``credential_process`` after 60 s."""

MIN_APPROVAL_TIMEOUT = 5.0
"""Lower bound for an approval: a human needs a few seconds to read the prompt."""

DEFAULT_APPROVAL_TIMEOUT = 50.0


def effective_floor(configured: int | None = None) -> int:
    """The serving floor in seconds: the configured value, but never below the 15 min floor."""
    if configured is None:
        return SERVE_FLOOR_SECONDS
    return max(int(configured), SERVE_FLOOR_SECONDS)


def servable(creds: SessionCredentials, now: datetime, floor: int = SERVE_FLOOR_SECONDS) -> bool:
    """Whether ``creds`` may be handed out at wall time ``now`` (at least ``floor`` s left)."""
    return creds.seconds_left(now) >= effective_floor(floor)


def needs_refresh(
    creds: SessionCredentials, now: datetime, floor: int = SERVE_FLOOR_SECONDS
) -> bool:
    """Whether a refresh should start now, ahead of the floor (always true once unservable)."""
    ahead = max(REFRESH_AHEAD_SECONDS, effective_floor(floor) + 300)
    return creds.seconds_left(now) < ahead


def _duration_range(kind: ProfileKind, chained: bool) -> tuple[int, int, int, str]:
    """(minimum, maximum, default, STS call) for a profile kind."""
    if kind is ProfileKind.SESSION:
        return MIN_DURATION_SECONDS, SESSION_MAX_SECONDS, SESSION_DEFAULT_SECONDS, "GetSessionToken"
    if kind is ProfileKind.ROOT:
        return MIN_DURATION_SECONDS, ROOT_MAX_SECONDS, ROOT_DEFAULT_SECONDS, "root GetSessionToken"
    if chained:
        return (
            MIN_DURATION_SECONDS,
            CHAINED_MAX_SECONDS,
            ROLE_DEFAULT_SECONDS,
            "AssumeRole by role chaining",
        )
    return MIN_DURATION_SECONDS, ROLE_MAX_SECONDS, ROLE_DEFAULT_SECONDS, "AssumeRole"


def validate_duration(
    kind: ProfileKind,
    seconds: int | None,
    *,
    chained: bool,
    field: str = "duration_seconds",
) -> int:
    """Return the effective DurationSeconds for a profile, or raise ``ConfigError``.

    ``None`` gives the default (session 43200, root 900, role 3600).  ``chained`` applies to
    role profiles only: a chained AssumeRole is capped at 3600 s.  ``field`` names the setting
    in the error (for example ``profiles.dev.duration_seconds``).
    """
    low, high, default, call = _duration_range(kind, chained)
    if seconds is None:
        return default
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not low <= seconds <= high:
        raise ConfigError(
            f"{field}={seconds!r} is outside the allowed range for {call}: "
            f"set {field} to an integer from {low} to {high}"
        )
    return seconds


def role_uses_chaining(duration_seconds: int) -> bool:
    """Whether a role session of this length is chained from the source's MFA session.

    Up to 3600 s the role is assumed with the source profile's session; longer sessions must
    be assumed directly with the long-lived keys plus MFA (docs/threat-model.md AWS contract).
    """
    return duration_seconds <= CHAINED_MAX_SECONDS


def validate_expiration(expiration: datetime | str, now: datetime) -> datetime:
    """Check an STS ``Expiration`` and return it as aware UTC, or raise ``StsError``.

    Naive, unparseable, past, and implausibly distant values (beyond the longest STS session
    plus clock skew) are refused, so they are never cached or served.
    """
    if isinstance(expiration, str):
        try:
            parsed = datetime.fromisoformat(expiration)
        except ValueError:
            raise StsError(
                "STS returned a malformed Expiration; nothing was cached, retry the request"
            ) from None
    else:
        parsed = expiration
    if parsed.tzinfo is None:
        raise StsError(
            "STS returned an Expiration without a time zone; nothing was cached, retry the request"
        )
    value = utc(parsed)
    if value <= now:
        raise StsError("STS returned an Expiration in the past; check the system clock and retry")
    if value > now + timedelta(seconds=SESSION_MAX_SECONDS + EXPIRATION_SKEW_SECONDS):
        raise StsError(
            "STS returned an Expiration beyond the longest possible session; "
            "check the system clock and retry"
        )
    return value


def validate_approval_timeout(seconds: float | None, *, field: str = "approval_timeout") -> float:
    """Return the approval timeout in seconds (default 50), or raise ``ConfigError``."""
    if seconds is None:
        return DEFAULT_APPROVAL_TIMEOUT
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or not MIN_APPROVAL_TIMEOUT <= seconds <= MAX_APPROVAL_TIMEOUT
    ):
        raise ConfigError(
            f"{field}={seconds!r} is outside the allowed range: set {field} to a number of "
            f"seconds from {MIN_APPROVAL_TIMEOUT:g} to {MAX_APPROVAL_TIMEOUT:g} "
            "(credential_process callers give up at 60 s)"
        )
    return float(seconds)
