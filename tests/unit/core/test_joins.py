"""Requests that join a waiting approval are listed on it, audited and told to the waiting
terminals (docs/threat-model.md T31); fakes at every port, as in test_service.py."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import replace

import pytest

from vaultd.core.approvals import MAX_JOINED, Approval, ApprovalEvent, ApprovalEventKind
from vaultd.core.model import ApprovalMethod, LongTermCredentials, Requester
from vaultd.core.service import ALSO_WAITING
from vaultd.errors import AuditError
from vaultd.testing.clock import FakeClock

from .test_approvals import WHO, make_book
from .test_service import ME, Audit, Secrets, Sts, approve_when_open, make

OTHER = Requester(pid=2, uid=1000, executable="/usr/bin/terraform")


def hold_key_pair(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """The key pair is read only once the returned event is set: the approval opens then."""
    go = threading.Event()
    key_pair = Secrets.key_pair

    def held(self: Secrets, name: str) -> LongTermCredentials:
        go.wait(30)
        return key_pair(self, name)

    monkeypatch.setattr(Secrets, "key_pair", held)
    return go


async def until(check: Callable[[], object]) -> None:
    """Poll ``check`` (a guard against a hang, not a timing check)."""
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


def test_the_book_lists_joiners_up_to_the_cap_and_counts_the_rest() -> None:
    book = make_book(FakeClock())
    events: list[ApprovalEvent] = []
    book.subscribe(events.append)
    approval = book.open("dev", "credential_process", WHO, ApprovalMethod.CODE)
    for pid in range(MAX_JOINED + 2):
        book.join(approval.id, replace(OTHER, pid=pid))
    (now,) = book.pending()
    view = now.as_dict()
    assert [j["pid"] for j in view["joined"]] == list(range(MAX_JOINED))  # type: ignore[attr-defined]
    assert view["joined_more"] == 2
    assert [e.kind for e in events].count(ApprovalEventKind.JOINED) == MAX_JOINED + 2
    book.deny(approval.id)
    assert book.join(approval.id, OTHER) is None  # nothing left to show


async def test_a_joiner_is_listed_audited_and_told_to_the_waiting_terminal() -> None:
    audit, sts = Audit(), Sts()
    service = make(audit, sts)
    told: list[tuple[str, int]] = []

    async def terminal(kind: str, approval: Approval, message: str = "") -> None:
        told.append((kind, approval.requester.pid))

    first = asyncio.ensure_future(
        service.credentials("dev", ME, on_event=terminal, interactive=True)
    )
    await until(lambda: service.approvals.pending())
    second = asyncio.ensure_future(service.credentials("dev", OTHER))
    await until(lambda: service.approvals.pending()[0].joined)
    assert service.approvals.pending()[0].joined == (OTHER,)
    assert (ALSO_WAITING, OTHER.pid) in told
    await approve_when_open(service, "123456")
    assert await first == await second
    assert sts.calls == ["123456"] and audit.events.count("approval_joined") == 1


async def test_a_joiner_before_the_approval_opens_is_listed_when_it_opens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    audit, sts, go = Audit(), Sts(), hold_key_pair(monkeypatch)
    service = make(audit, sts)
    first = asyncio.ensure_future(service.credentials("dev", ME))
    await until(lambda: service.flight.waiting("profile:dev") == 1)
    second = asyncio.ensure_future(service.credentials("dev", OTHER))
    await until(lambda: service.flight.waiting("profile:dev") == 2)
    assert service.approvals.pending() == []
    go.set()
    await until(lambda: service.approvals.pending() and service.approvals.pending()[0].joined)
    assert service.approvals.pending()[0].joined == (OTHER,)
    await approve_when_open(service, "123456")
    assert await first == await second
    assert audit.events.count("approval_joined") == 1


async def test_a_joiner_whose_record_fails_gets_nothing() -> None:
    audit, sts = Audit(fail_on="approval_joined"), Sts()
    service = make(audit, sts)
    first = asyncio.ensure_future(service.credentials("dev", ME))
    await until(lambda: service.approvals.pending())
    with pytest.raises(AuditError):
        await service.credentials("dev", OTHER)
    await approve_when_open(service, "123456")
    assert (await first).access_key_id == "ASIAFAKE"
    assert audit.events.count("release") == 1
