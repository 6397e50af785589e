"""Who else waits on an approval: the requests that joined its single-flight.

A request for a profile whose session is being made joins that flight and gets the same
session when the approval is answered.  The approver must see every such process
(docs/threat-model.md T31), so each flight remembers the approval it opened, and a joiner is
listed on it; one that arrives before the approval opens waits here until it does.

A flight's task is created inside :meth:`JoinBoard.flight`, so the task's context names the
flight keys it serves (a chained role's source flight runs inside the role's).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from vaultd.core.approvals import MAX_JOINED, Approval
from vaultd.core.model import Requester

Sink = Callable[[str, Approval], Awaitable[None]]
"""Pushes an event about an approval to one waiting client with a terminal."""

_FLIGHTS: ContextVar[tuple[str, ...]] = ContextVar("vaultd_flights", default=())


@dataclass(frozen=True, slots=True)
class Joiner:
    """A request that rides another's flight; ``sink`` is set when it shows a terminal."""

    requester: Requester
    sink: Sink | None


class JoinBoard:
    """Flight keys to their open approval, early joiners, and the terminals to tell."""

    def __init__(self) -> None:
        self._approval_of: dict[str, str] = {}
        self._early: dict[str, list[Joiner]] = {}
        self._sinks: dict[str, list[Sink]] = {}

    @contextlib.contextmanager
    def flight(self, key: str) -> Iterator[None]:
        """A flight started in this block serves ``key`` (and the keys around it)."""
        token = _FLIGHTS.set((*_FLIGHTS.get(), key))
        try:
            yield
        finally:
            _FLIGHTS.reset(token)

    def approval_for(self, key: str, joiner: Joiner) -> str | None:
        """The approval open for flight ``key``; None (and ``joiner`` kept until one opens)
        when there is none yet.  The flight's waiter cap bounds how many are kept."""
        approval_id = self._approval_of.get(key)
        if approval_id is None:
            self._early.setdefault(key, []).append(joiner)
        return approval_id

    def opened(self, approval_id: str, sink: Sink | None) -> list[Joiner]:
        """Register the approval opened by the current flight; returns who joined before."""
        early: list[Joiner] = []
        for key in _FLIGHTS.get():
            self._approval_of[key] = approval_id
            early += self._early.pop(key, [])
        self._sinks[approval_id] = [] if sink is None else [sink]
        return early

    def sinks(self, approval_id: str) -> list[Sink]:
        """The terminals waiting on ``approval_id`` now."""
        return list(self._sinks.get(approval_id, ()))

    def add_sink(self, approval_id: str, sink: Sink | None) -> None:
        """Tell ``sink`` about later joiners too (at most :data:`MAX_JOINED` terminals)."""
        sinks = self._sinks.get(approval_id)
        if sink is not None and sinks is not None and len(sinks) <= MAX_JOINED:
            sinks.append(sink)

    def closed(self, approval_id: str) -> None:
        """Forget a finished approval: later requests start or join a new one."""
        self._sinks.pop(approval_id, None)
        for key in [k for k, v in self._approval_of.items() if v == approval_id]:
            del self._approval_of[key]

    def ended(self, key: str) -> None:
        """Forget the early joiners of flight ``key`` once it is over."""
        self._early.pop(key, None)
