"""A clock that tests move by hand: wall and monotonic time advance together unless told."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClock:
    """Implements the ``Clock`` port; nothing moves until ``advance`` or ``jump_wall``."""

    def __init__(self, start: datetime = DEFAULT_START, mono: float = 1000.0) -> None:
        self._wall = start
        self._mono = mono

    def now(self) -> datetime:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds``."""
        self._wall += timedelta(seconds=seconds)
        self._mono += seconds

    def jump_wall(self, seconds: float) -> None:
        """Move only the wall clock (a clock step); monotonic time stays."""
        self._wall += timedelta(seconds=seconds)
