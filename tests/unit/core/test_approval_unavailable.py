"""A code approval nobody can answer is refused with APPROVAL_UNAVAILABLE (docs/threat-model.md T2,
F14).

The rule (`code_approval_deliverable`), `ApprovalBook.withdraw` and `VaultService` with fakes at
every port: no token, no network, FakeClock.  The STS, gate and code source are fakes because
these tests are about what the service decides before any of them would be used; the real
daemon is exercised in tests/integration/daemon/test_approval_unavailable.py.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import TypeVar

import pytest

from vaultd.core.approvals import (
    ApprovalBook,
    ApprovalEvent,
    ApprovalState,
    code_approval_deliverable,
)
from vaultd.core.model import (
    ApprovalMethod,
    LongTermCredentials,
    Profile,
    ProfileKind,
    Requester,
    SessionCredentials,
)
from vaultd.core.otp_ledger import OtpLedger
from vaultd.core.ports import Gate
from vaultd.core.service import Ports, VaultService
from vaultd.errors import ApprovalUnavailable
from vaultd.testing.clock import FakeClock

T = TypeVar("T")
DEV_SERIAL = "arn:aws:iam::123456789012:mfa/alice"
OPS_SERIAL = "arn:aws:iam::123456789012:mfa/bob"
SCRIPT = Requester(pid=7, uid=1000, executable="/usr/bin/terraform")


class Sts:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls = 0

    def get_session_token(
        self, credentials: LongTermCredentials, **kw: object
    ) -> SessionCredentials:
        self.calls += 1
        return SessionCredentials("ASIAFAKE", "s", "t", self.clock.now() + timedelta(hours=1))

    def assume_role(self, credentials: object, **kw: object) -> SessionCredentials:
        raise AssertionError("no role profile here")


class Secrets:
    def key_pair(self, name: str) -> LongTermCredentials:
        return LongTermCredentials("AKIAEXAMPLE000000001", "x" * 40)


class Audit:
    def __init__(self) -> None:
        self.records: list[tuple[str, Mapping[str, object]]] = []

    def record(self, event: str, fields: Mapping[str, object]) -> None:
        self.records.append((event, dict(fields)))

    async def record_async(
        self, event: str, fields: Mapping[str, object], *, timeout: float
    ) -> None:
        self.record(event, fields)

    def outcomes(self, event: str) -> list[object]:
        return [f.get("outcome") for e, f in self.records if e == event]


class State:
    def save_ledger(self, data: dict[str, object]) -> None:
        pass


class AbsentKey:
    """A touch gate whose key is not plugged in: it refuses at once, as the real gate does."""

    def approve(self, approval_id: str, **kw: object) -> object:
        raise ApprovalUnavailable("no enrolled FIDO2 key is present")


class Seeds:
    def has_seed(self, serial: str) -> bool:
        return True

    def code_for(self, serial: str) -> tuple[str, float]:
        raise AssertionError("the touch never passes here")


class TouchedKey:
    """A touch gate whose key is touched as soon as it waits."""

    def approve(self, approval_id: str, *, on_prompt: Callable[[], None], **kw: object) -> object:
        on_prompt()
        return object()


class SpentStepSeeds(Seeds):
    """The current step's code was used: this one is for the next step, a short real wait."""

    def code_for(self, serial: str) -> tuple[str, float]:
        return "654321", 0.05


async def run(fn: Callable[[], T]) -> T:
    return fn()


async def bounded(aw: Awaitable[T]) -> T:
    """Await ``aw``; a guard so a broken rule fails the test instead of hanging on FakeClock."""
    return await asyncio.wait_for(aw, 10)


class World:
    """A service over fakes whose approver count the test sets."""

    def __init__(
        self,
        *,
        out_of_band: bool = False,
        approval: ApprovalMethod = ApprovalMethod.CODE,
        key: Gate | None = None,
        seeds: Seeds | None = None,
    ) -> None:
        self.clock = FakeClock()
        self.sts = Sts(self.clock)
        self.audit = Audit()
        self.approvers = 0
        self.events: list[ApprovalEvent] = []
        self.notified: list[str] = []
        gate: Gate | None = key or (AbsentKey() if approval is not ApprovalMethod.CODE else None)
        ports = Ports(
            self.clock,
            self.sts,
            Secrets(),
            self.audit,
            State(),
            run,
            run,
            gate=gate,
            codes=seeds or Seeds() if gate is not None else None,
            notify=lambda event, *_: self.notified.append(event),
        )
        profiles = {
            name: Profile(
                name, ProfileKind.SESSION, credentials=name, mfa_serial=serial, approval=approval
            )
            for name, serial in (("dev", DEV_SERIAL), ("ops", OPS_SERIAL))
        }
        self.service = VaultService(
            profiles,
            ports,
            ledger=OtpLedger(),
            out_of_band=out_of_band,
            approvers=lambda: self.approvers,
        )
        self.service.approvals.subscribe(self.events.append)

    def opened(self) -> list[str]:
        return [e.approval.id for e in self.events if e.kind.value == "opened"]

    async def until_pending(self, n: int = 1) -> list[str]:
        for _ in range(200):
            pending = self.service.approvals.pending()
            if len(pending) >= n:
                return [a.id for a in pending]
            await asyncio.sleep(0)
        raise AssertionError("no approval opened")


@pytest.mark.parametrize(
    ("interactive", "approvers", "out_of_band"),
    itertools.product([False, True], [0, 1], [False, True]),
)
def test_deliverable_iff_a_terminal_a_tui_or_out_of_band(
    interactive: bool, approvers: int, out_of_band: bool
) -> None:
    expected = interactive or approvers == 1 or out_of_band
    got = code_approval_deliverable(
        interactive=interactive, approvers=approvers, out_of_band=out_of_band
    )
    assert got is expected


async def test_withdraw_gives_every_waiter_unavailable() -> None:
    book = ApprovalBook(FakeClock())
    seen: list[ApprovalEvent] = []
    book.subscribe(seen.append)
    aid = book.open("dev", "credential_process", SCRIPT, ApprovalMethod.CODE).id
    waiters = [asyncio.create_task(book.wait(aid)) for _ in range(3)]
    await asyncio.sleep(0)
    assert book.withdraw(aid).state is ApprovalState.UNAVAILABLE
    results = await bounded(asyncio.gather(*waiters, return_exceptions=True))
    assert all(isinstance(r, ApprovalUnavailable) for r in results)
    assert "vaultd tui" in str(results[0]) and "approval.out_of_band" in str(results[0])
    assert [e.kind.value for e in seen] == ["opened", "resolved"]
    assert book.pending() == []


async def test_no_terminal_no_tui_refuses_before_any_approval_opens() -> None:
    world = World()
    calls = (world.service.credentials("dev", SCRIPT) for _ in range(3))
    results = await bounded(asyncio.gather(*calls, return_exceptions=True))
    assert all(isinstance(r, ApprovalUnavailable) for r in results)
    message = str(results[0])
    assert "run the command in a terminal" in message and "vaultd tui" in message
    assert world.opened() == []
    assert world.sts.calls == 0
    assert world.audit.outcomes("refused") == ["APPROVAL_UNAVAILABLE"] * 3
    # Nobody denied: no cooldown, so a request from a terminal is asked at once.
    asked = asyncio.create_task(world.service.credentials("dev", SCRIPT, interactive=True))
    (aid,) = await world.until_pending()
    await world.service.approve(aid, "123456")
    assert (await bounded(asked)).access_key_id == "ASIAFAKE"
    assert world.sts.calls == 1


@pytest.mark.parametrize("how", ["interactive", "approver", "out_of_band"])
async def test_a_reachable_approval_opens_and_is_answered(how: str) -> None:
    world = World(out_of_band=how == "out_of_band")
    world.approvers = 1 if how == "approver" else 0
    asked = asyncio.create_task(
        world.service.credentials("dev", SCRIPT, interactive=how == "interactive")
    )
    (aid,) = await world.until_pending()
    await world.service.approve(aid, "123456")
    assert (await bounded(asked)).access_key_id == "ASIAFAKE"
    assert world.opened() == [aid]


async def test_last_approver_leaving_ends_only_approvals_nobody_else_can_answer() -> None:
    world = World()
    world.approvers = 1
    scripted = [asyncio.create_task(world.service.credentials("dev", SCRIPT)) for _ in range(3)]
    typed = asyncio.create_task(world.service.credentials("ops", SCRIPT, interactive=True))
    pending = await world.until_pending(2)
    assert world.service.approver_detached() == []  # one approver is still attached
    world.approvers = 0
    ended = world.service.approver_detached()
    assert len(ended) == 1 and ended[0].profile == "dev"
    results = await bounded(asyncio.gather(*scripted, return_exceptions=True))
    assert all(isinstance(r, ApprovalUnavailable) for r in results)
    assert world.audit.outcomes("approval_failed") == ["APPROVAL_UNAVAILABLE"]
    (still,) = world.service.approvals.pending()
    assert still.profile == "ops" and still.id in pending
    await world.service.approve(still.id, "654321")
    assert (await bounded(typed)).access_key_id == "ASIAFAKE"
    assert world.sts.calls == 1
    # No cooldown after UNAVAILABLE: the next `dev` request with a TUI attached is asked.
    world.approvers = 1
    again = asyncio.create_task(world.service.credentials("dev", SCRIPT))
    (aid,) = await world.until_pending()
    await world.service.approve(aid, "111111")
    assert (await bounded(again)).access_key_id == "ASIAFAKE"


async def test_out_of_band_keeps_approvals_when_the_approver_leaves() -> None:
    world = World(out_of_band=True)
    world.approvers = 1
    asked = asyncio.create_task(world.service.credentials("dev", SCRIPT))
    (aid,) = await world.until_pending()
    world.approvers = 0
    assert world.service.approver_detached() == []
    await world.service.approve(aid, "123456")
    assert (await bounded(asked)).access_key_id == "ASIAFAKE"


async def test_touch_or_code_with_no_key_and_nobody_to_ask_ends_at_once() -> None:
    """The key is the prompter; once it is absent, the typed-code rule decides."""
    world = World(approval=ApprovalMethod.TOUCH_OR_CODE)
    with pytest.raises(ApprovalUnavailable):
        await bounded(world.service.credentials("dev", SCRIPT))
    (aid,) = world.opened()  # the touch was tried: the approval opened
    assert world.service.approvals.pending() == []
    assert world.audit.outcomes("approval_failed") == ["APPROVAL_UNAVAILABLE"]
    assert world.sts.calls == 0
    with pytest.raises(ApprovalUnavailable):  # not DeniedCooldown: nobody denied
        await bounded(world.service.credentials("dev", SCRIPT))
    assert len(world.opened()) == 2 and aid in world.opened()


async def test_touch_or_code_with_no_key_from_a_terminal_waits_for_the_code() -> None:
    world = World(approval=ApprovalMethod.TOUCH_OR_CODE)
    asked = asyncio.create_task(world.service.credentials("dev", SCRIPT, interactive=True))
    (aid,) = await world.until_pending()
    for _ in range(200):  # until the failed touch is handled
        if "touch_failed" in world.notified:
            break
        await asyncio.sleep(0)
    assert world.notified == ["touch_failed"]  # "type the code instead"
    assert [a.id for a in world.service.approvals.pending()] == [aid]
    await world.service.approve(aid, "123456")
    assert (await bounded(asked)).access_key_id == "ASIAFAKE"


async def test_a_touch_request_tells_each_state_and_a_cache_hit_asks_nothing() -> None:
    """The requester gets each state as an event, the notifier too (no terminal), and status
    shows the answered request while it waits for the next code; a cached session is served
    with no event and no notification."""
    world = World(approval=ApprovalMethod.TOUCH, key=TouchedKey(), seeds=SpentStepSeeds())
    told: list[tuple[str, str, list[dict[str, str]]]] = []

    async def on_event(kind: str, approval: object, message: str = "") -> None:
        told.append((kind, message, world.service.in_progress()))

    await bounded(world.service.credentials("dev", SCRIPT, on_event=on_event))
    await asyncio.sleep(0)  # the touch prompt's event is sent by a background task
    assert world.notified == ["touch_needed", "next_code_wait", "calling_sts"]
    progress = [(kind, message) for kind, message, _ in told if message]
    assert progress == [
        (
            "next_code_wait",
            "touch received, waiting 1 s for the next code (AWS accepts each code once)",
        ),
        ("calling_sts", "calling STS"),
    ]
    assert [kind for kind, message, _ in told if not message] == ["touch_needed"]
    (during,) = told[-1][2]
    assert (during["profile"], during["state"]) == ("dev", "calling_sts")
    assert world.service.in_progress() == []
    assert world.service.status()["in_progress"] == []
    before = (len(told), len(world.notified))
    await bounded(world.service.credentials("dev", SCRIPT, on_event=on_event))
    assert (len(told), len(world.notified)) == before
