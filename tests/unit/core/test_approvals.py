"""ApprovalBook: deny by default, final outcomes, code format, deadlines on FakeClock."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import pytest

from vaultd.core.approvals import (
    ApprovalBook,
    ApprovalEvent,
    ApprovalEventKind,
    ApprovalState,
    new_approval_id,
)
from vaultd.core.model import ApprovalMethod, Requester
from vaultd.errors import (
    ApprovalNotFound,
    ApprovalTimeout,
    ApprovalUnavailable,
    BadRequest,
    CodeMalformed,
    ConfigError,
    Denied,
)
from vaultd.testing.clock import FakeClock

WHO = Requester(pid=4242, uid=1000, executable="/usr/bin/aws", cwd="/home/u/project")
ARABIC_INDIC = "\u0661\u0662\u0663\u0664\u0665\u0666"
FULL_WIDTH = "\uff11\uff12\uff13\uff14\uff15\uff16"
HOUR = 3600.0  # longer than any test runs: the deadline is driven by FakeClock, not by sleeping


def make_book(clock: FakeClock, *, id_factory: Callable[[], str] = new_approval_id) -> ApprovalBook:
    """A book whose own deadline sleep never ends within a test; FakeClock drives expiry."""

    async def never(_: float) -> None:
        await asyncio.sleep(HOUR)

    return ApprovalBook(clock, sleep=never, id_factory=id_factory)


def open_one(book: ApprovalBook, methods: ApprovalMethod = ApprovalMethod.CODE) -> str:
    return book.open("dev", "credential-process", WHO, methods).id


async def test_approve_with_code_resolves_every_waiter() -> None:
    book = make_book(FakeClock())
    aid = open_one(book)
    waiters = [asyncio.create_task(book.wait(aid)) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(t.done() for t in waiters)
    approval = book.approve(aid, code="123456")
    assert approval.state is ApprovalState.APPROVED
    for resolution in await asyncio.gather(*waiters):
        assert resolution.code == "123456"
        assert resolution.approval.id == aid
        assert "123456" not in repr(resolution)
    assert book.pending() == []


async def test_approve_before_wait_is_kept() -> None:
    book = make_book(FakeClock())
    aid = open_one(book, ApprovalMethod.TOUCH)
    book.approve(aid, code=None)
    assert (await book.wait(aid)).code is None


async def test_deny_is_final_for_every_waiter() -> None:
    book = make_book(FakeClock())
    aid = open_one(book)
    waiters = [asyncio.create_task(book.wait(aid)) for _ in range(5)]
    await asyncio.sleep(0)
    book.deny(aid)
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, Denied) for r in results)
    with pytest.raises(Denied):
        await book.wait(aid)
    with pytest.raises(ApprovalNotFound):
        book.approve(aid, code="123456")
    with pytest.raises(ApprovalNotFound):
        book.deny(aid)


async def test_no_answer_times_out_via_expire_due() -> None:
    clock = FakeClock()
    book = make_book(clock)
    aid = open_one(book)
    waiter = asyncio.create_task(book.wait(aid))
    await asyncio.sleep(0)
    clock.advance(49.9)
    assert book.expire_due() == []
    assert not waiter.done()
    clock.advance(0.1)
    [expired] = book.expire_due()
    assert expired.id == aid and expired.state is ApprovalState.TIMED_OUT
    with pytest.raises(ApprovalTimeout):
        await waiter
    with pytest.raises(ApprovalNotFound):
        book.approve(aid, code="123456")


async def test_wait_enforces_the_deadline_itself() -> None:
    clock = FakeClock()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    book = ApprovalBook(clock, timeout=20, sleep=sleep)
    aid = open_one(book)
    with pytest.raises(ApprovalTimeout, match="20 s"):
        await book.wait(aid)
    assert slept == [20.0]
    assert book.pending() == []


async def test_late_approve_after_deadline_is_refused_without_expire_due() -> None:
    clock = FakeClock()
    book = make_book(clock)
    aid = open_one(book)
    clock.advance(50)
    with pytest.raises(ApprovalNotFound):
        book.approve(aid, code="123456")
    with pytest.raises(ApprovalTimeout):
        await book.wait(aid)


async def test_wall_clock_jump_does_not_extend_an_approval() -> None:
    clock = FakeClock()
    book = make_book(clock)
    aid = open_one(book)
    clock.jump_wall(-3600)
    clock.advance(50)
    assert [a.id for a in book.expire_due()] == [aid]


@pytest.mark.parametrize(
    "code",
    ["12345", "1234567", " 123456", "123456 ", "123456\n", "12345a", ARABIC_INDIC, FULL_WIDTH, ""],
)
def test_malformed_codes_refused_before_lookup(code: str) -> None:
    book = make_book(FakeClock())
    aid = open_one(book)
    with pytest.raises(CodeMalformed):
        book.approve(aid, code=code)
    with pytest.raises(CodeMalformed):
        book.approve("no-such-id", code=code)
    assert [a.id for a in book.pending()] == [aid]


def test_code_required_or_refused_by_method() -> None:
    book = make_book(FakeClock())
    code_only = open_one(book, ApprovalMethod.CODE)
    with pytest.raises(CodeMalformed, match="needs the 6-digit"):
        book.approve(code_only, code=None)
    touch_only = open_one(book, ApprovalMethod.TOUCH)
    with pytest.raises(BadRequest, match="field code"):
        book.approve(touch_only, code="123456")
    either = open_one(book, ApprovalMethod.TOUCH_OR_CODE)
    assert book.approve(either, code=None).state is ApprovalState.APPROVED
    assert {a.id for a in book.pending()} == {code_only, touch_only}


async def test_unknown_id() -> None:
    book = make_book(FakeClock())
    with pytest.raises(ApprovalNotFound, match="zzz"):
        book.approve("zzz", code="123456")
    with pytest.raises(ApprovalNotFound) as info:
        book.deny("../" + "x" * 100)
    assert "xxxx" not in str(info.value)
    with pytest.raises(ApprovalNotFound):
        await book.wait("zzz")


async def test_cancel_all_denies_with_vault_locked() -> None:
    book = make_book(FakeClock())
    ids = [open_one(book) for _ in range(3)]
    waiters = [asyncio.create_task(book.wait(i)) for i in ids]
    await asyncio.sleep(0)
    assert len(book.cancel_all()) == 3
    for result in await asyncio.gather(*waiters, return_exceptions=True):
        assert isinstance(result, Denied) and "vault locked" in str(result)
    assert book.pending() == []


async def test_cancelled_waiter_leaves_approval_pending() -> None:
    book = make_book(FakeClock())
    aid = open_one(book)
    leaver = asyncio.create_task(book.wait(aid))
    stayer = asyncio.create_task(book.wait(aid))
    await asyncio.sleep(0)
    leaver.cancel()
    await asyncio.gather(leaver, return_exceptions=True)
    assert [a.id for a in book.pending()] == [aid]
    book.approve(aid, code="654321")
    assert (await stayer).code == "654321"


def test_pending_view_and_observers(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    ids = itertools.count()
    book = make_book(clock, id_factory=lambda: f"id{next(ids)}")
    events: list[ApprovalEvent] = []

    def broken(_: ApprovalEvent) -> None:
        raise RuntimeError("observer bug")

    book.subscribe(broken)
    unsubscribe = book.subscribe(events.append)
    approval = book.open("dev", "credential-process", WHO, ApprovalMethod.TOUCH_OR_CODE)
    assert approval.id == "id0"
    view = approval.as_dict()
    assert view["expires_at"] == "2026-01-01T00:00:50Z"
    requested_by = view["requested_by"]
    assert isinstance(requested_by, dict)
    assert requested_by["pid"] == 4242 and requested_by["uid"] == 1000
    assert requested_by["executable"] == "/usr/bin/aws"
    assert requested_by["cwd"] == "/home/u/project"
    assert view["profile"] == "dev" and view["state"] == "pending"
    book.approve("id0", code="123456")
    assert [(e.kind, e.approval.state) for e in events] == [
        (ApprovalEventKind.OPENED, ApprovalState.PENDING),
        (ApprovalEventKind.RESOLVED, ApprovalState.APPROVED),
    ]
    assert "123456" not in repr(events)
    assert caplog.text.count("an approval observer failed") == 2
    assert "123456" not in caplog.text
    unsubscribe()
    book.open("dev", "exec", WHO, ApprovalMethod.CODE)
    assert len(events) == 2


async def test_finished_approvals_are_forgotten_after_retention() -> None:
    clock = FakeClock()
    book = make_book(clock)
    aid = open_one(book)
    book.deny(aid)
    clock.advance(59)
    book.expire_due()
    with pytest.raises(Denied):
        await book.wait(aid)
    clock.advance(2)
    book.expire_due()
    with pytest.raises(ApprovalNotFound):
        await book.wait(aid)


def test_id_factory_collisions_and_default_ids() -> None:
    book = make_book(FakeClock(), id_factory=lambda: "same")
    open_one(book)
    with pytest.raises(ApprovalUnavailable):
        open_one(book)
    fresh = {new_approval_id() for _ in range(100)}
    assert len(fresh) == 100
    # Typed on a command line: no leading "-" can be mistaken for an option.
    assert all(len(i) == 14 and i.isascii() and i.isalnum() for i in fresh)


@pytest.mark.parametrize("timeout", [56, 0, 4])
def test_timeout_is_bounded(timeout: float) -> None:
    with pytest.raises(ConfigError):
        ApprovalBook(FakeClock(), timeout=timeout)
