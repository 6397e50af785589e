"""One execution per key for concurrent callers, with bounded waiters and a cooldown after a deny.

Keyed by (profile, MFA serial) in the daemon, so a burst of 200 clients makes one prompt and
one STS call (docs/threat-model.md T10).  The shared execution runs in its own task: a waiter that
goes away never cancels it, and its result may still fill the cache.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from vaultd.core.ports import Clock
from vaultd.errors import ApprovalTimeout, Busy, Denied, DeniedCooldown

T = TypeVar("T")

DEFAULT_MAX_WAITERS = 512
DEFAULT_COOLDOWN_SECONDS = 30.0


@dataclass(slots=True)
class _Flight:
    task: asyncio.Task[Any]
    waiters: int = 0
    cooldown: bool = True


class SingleFlight:
    """Share one execution of ``fn`` among concurrent callers with the same key."""

    def __init__(
        self,
        clock: Clock,
        *,
        max_waiters: int = DEFAULT_MAX_WAITERS,
        cooldown_seconds: float = DEFAULT_COOLDOWN_SECONDS,
    ) -> None:
        if max_waiters < 1:
            raise ValueError("max_waiters must be at least 1")
        self._clock = clock
        self._max_waiters = max_waiters
        self._cooldown = cooldown_seconds
        self._flights: dict[Hashable, _Flight] = {}
        self._cooldown_until: dict[Hashable, float] = {}
        self._epoch = 0

    async def run(self, key: Hashable, fn: Callable[[], Awaitable[T]]) -> T:
        """Return the result of the one shared ``fn()`` for ``key`` (or raise its exception).

        Raises ``DeniedCooldown`` without calling ``fn`` while a cooldown for ``key`` runs, and
        ``Busy`` when ``max_waiters`` callers already wait on ``key``.
        """
        self._check_cooldown(key)
        flight = self._flights.get(key)
        if flight is None or flight.task.done():
            flight = _Flight(asyncio.create_task(self._execute(key, self._epoch, fn)))
            flight.task.add_done_callback(_retrieve)
            self._flights[key] = flight
        elif flight.waiters >= self._max_waiters:
            raise Busy(
                f"{flight.waiters} requests already wait for this profile; retry in a moment"
            )
        flight.waiters += 1
        try:
            return cast(T, await asyncio.shield(flight.task))
        finally:
            flight.waiters -= 1

    def waiting(self, key: Hashable) -> int:
        """How many callers currently wait on ``key``."""
        flight = self._flights.get(key)
        return 0 if flight is None else flight.waiters

    def clear(self) -> None:
        """Drop every cooldown; executions already running set none when they end (lock)."""
        self._cooldown_until.clear()
        self._epoch += 1

    def forget(self, key: Hashable) -> None:
        """Drop ``key``'s cooldown; its execution already running sets none when it ends."""
        self._cooldown_until.pop(key, None)
        flight = self._flights.get(key)
        if flight is not None:
            flight.cooldown = False

    def cooldowns(self) -> dict[Hashable, float]:
        """The keys in a cooldown now, with the seconds left (ended ones are dropped)."""
        now = self._clock.monotonic()
        for key in [k for k, until in self._cooldown_until.items() if until <= now]:
            del self._cooldown_until[key]
        return {key: until - now for key, until in self._cooldown_until.items()}

    def _check_cooldown(self, key: Hashable) -> None:
        until = self._cooldown_until.get(key)
        if until is None:
            return
        left = until - self._clock.monotonic()
        if left <= 0:
            del self._cooldown_until[key]
            return
        wait = math.ceil(left)
        raise DeniedCooldown(
            f"a request for this profile was just denied or timed out; retry after {wait} s",
            retry_after=left,
            key=key,
        )

    async def _execute(self, key: Hashable, epoch: int, fn: Callable[[], Awaitable[T]]) -> T:
        try:
            return await fn()
        except DeniedCooldown:
            raise  # another key's cooldown (a chained role's source): it starts none here
        except (Denied, ApprovalTimeout):
            flight = self._flights.get(key)
            quiet = (
                flight is not None and flight.task is asyncio.current_task() and not flight.cooldown
            )
            if epoch == self._epoch and self._cooldown > 0 and not quiet:
                self._cooldown_until[key] = self._clock.monotonic() + self._cooldown
            raise
        finally:
            flight = self._flights.get(key)
            if flight is not None and flight.task is asyncio.current_task():
                del self._flights[key]


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark an exception as seen, so a flight every waiter left does not log a warning."""
    if not task.cancelled():
        task.exception()
