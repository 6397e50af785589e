"""SingleFlight: one shared execution per key, bounded waiters, cooldown after a deny."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from vaultd.core.singleflight import SingleFlight
from vaultd.errors import ApprovalTimeout, Busy, Denied, DeniedCooldown, StsThrottled
from vaultd.testing.clock import FakeClock


class Work:
    """A scripted shared execution: counts calls and blocks until released."""

    def __init__(self, outcome: object = None, error: BaseException | None = None) -> None:
        self.calls = 0
        self.finished = 0
        self.release = asyncio.Event()
        self.outcome = outcome if outcome is not None else object()
        self.error = error

    async def __call__(self) -> object:
        self.calls += 1
        await self.release.wait()
        self.finished += 1
        if self.error is not None:
            raise self.error
        return self.outcome


async def burst(
    sf: SingleFlight, key: str, fn: Callable[[], Awaitable[object]], n: int
) -> list[asyncio.Task[object]]:
    tasks = [asyncio.create_task(sf.run(key, fn)) for _ in range(n)]
    await asyncio.sleep(0)
    return tasks


async def test_200_callers_share_one_execution() -> None:
    sf = SingleFlight(FakeClock())
    work = Work()
    tasks = await burst(sf, "dev", work, 200)
    assert sf.waiting("dev") == 200
    work.release.set()
    results = await asyncio.gather(*tasks)
    assert work.calls == 1
    assert len(results) == 200 and all(r is work.outcome for r in results)
    assert sf.waiting("dev") == 0


async def test_exception_is_shared_and_sets_no_cooldown() -> None:
    sf = SingleFlight(FakeClock())
    work = Work(error=StsThrottled("throttled"))
    tasks = await burst(sf, "dev", work, 200)
    work.release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert work.calls == 1
    assert all(isinstance(r, StsThrottled) for r in results)
    work.error = None
    work.release.set()
    assert await sf.run("dev", work) is work.outcome
    assert work.calls == 2


async def test_keys_are_independent() -> None:
    sf = SingleFlight(FakeClock())
    work = Work()
    work.release.set()
    await asyncio.gather(sf.run("a", work), sf.run("b", work))
    assert work.calls == 2


@pytest.mark.parametrize("error", [Denied("denied by the user"), ApprovalTimeout("no answer")])
async def test_deny_starts_cooldown_that_fails_fast(error: Exception) -> None:
    clock = FakeClock()
    sf = SingleFlight(clock)
    work = Work(error=error)
    tasks = await burst(sf, "dev", work, 200)
    work.release.set()
    first = await asyncio.gather(*tasks, return_exceptions=True)
    assert work.calls == 1 and all(r is error for r in first)

    clock.advance(10)
    second = await asyncio.gather(
        *(sf.run("dev", work) for _ in range(200)), return_exceptions=True
    )
    assert work.calls == 1
    assert all(isinstance(r, DeniedCooldown) for r in second)
    cooldown = second[0]
    assert isinstance(cooldown, DeniedCooldown)
    assert cooldown.code == "COOLDOWN"  # was DENIED: one code per cause (issue 16)
    assert cooldown.retry_after == pytest.approx(20)
    assert "retry after 20 s" in str(cooldown)

    other = Work()
    other.release.set()
    assert await sf.run("other", other) is other.outcome  # cooldowns are per key
    clock.advance(20)
    work.error = None
    assert await sf.run("dev", work) is work.outcome
    assert work.calls == 2


async def test_a_cooldown_met_inside_another_key_starts_none_there_and_is_listed() -> None:
    """A chained role meets its source's cooldown: the role gets it, but no cooldown of its
    own, so ending the source's (``forget``) frees both."""
    clock = FakeClock()
    sf = SingleFlight(clock)
    denied = Work(error=Denied("no"))
    denied.release.set()
    with pytest.raises(Denied):
        await sf.run("profile:dev", denied)
    clock.advance(10)
    assert sf.cooldowns() == {"profile:dev": pytest.approx(20)}

    async def chained() -> object:
        return await sf.run("profile:dev", denied)

    with pytest.raises(DeniedCooldown):
        await sf.run("profile:admin", chained)
    assert list(sf.cooldowns()) == ["profile:dev"]
    sf.forget("profile:dev")
    assert sf.cooldowns() == {}
    clock.advance(1)
    ok = Work()
    ok.release.set()
    assert await sf.run("profile:admin", ok) is ok.outcome


async def test_clear_drops_cooldowns_and_late_denials() -> None:
    clock = FakeClock()
    sf = SingleFlight(clock)
    denied = Work(error=Denied("no"))
    denied.release.set()
    with pytest.raises(Denied):
        await sf.run("dev", denied)
    with pytest.raises(DeniedCooldown):
        await sf.run("dev", denied)
    sf.clear()
    ok = Work()
    ok.release.set()
    assert await sf.run("dev", ok) is ok.outcome

    locked = Work(error=Denied("vault locked"))
    task = asyncio.create_task(sf.run("dev", locked))
    await asyncio.sleep(0)
    sf.clear()  # the lock happens while the execution is running
    locked.release.set()
    with pytest.raises(Denied):
        await task
    assert await sf.run("dev", ok) is ok.outcome  # no cooldown from before the lock


async def test_waiters_beyond_cap_get_busy() -> None:
    sf = SingleFlight(FakeClock(), max_waiters=3)
    work = Work()
    tasks = await burst(sf, "dev", work, 3)
    with pytest.raises(Busy):
        await sf.run("dev", work)
    work.release.set()
    assert len(await asyncio.gather(*tasks)) == 3
    assert work.calls == 1


async def test_cancelled_waiter_does_not_cancel_shared_work() -> None:
    sf = SingleFlight(FakeClock())
    work = Work()
    leaver, stayer = await burst(sf, "dev", work, 2)
    leaver.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaver
    assert sf.waiting("dev") == 1
    work.release.set()
    assert await stayer is work.outcome
    assert work.calls == 1 and work.finished == 1


async def test_execution_continues_when_every_waiter_left() -> None:
    sf = SingleFlight(FakeClock())
    filled: list[object] = []
    work = Work()

    async def fill_cache() -> object:
        result = await work()
        filled.append(result)
        return result

    tasks = await burst(sf, "dev", fill_cache, 5)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert sf.waiting("dev") == 0
    # A caller arriving now joins the still-running execution rather than starting another.
    joiner = asyncio.create_task(sf.run("dev", fill_cache))
    await asyncio.sleep(0)
    work.release.set()
    assert await joiner is work.outcome
    assert filled == [work.outcome] and work.calls == 1


async def test_abandoned_failure_is_consumed() -> None:
    sf = SingleFlight(FakeClock())
    work = Work(error=StsThrottled("throttled"))
    [task] = await burst(sf, "dev", work, 1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    work.release.set()
    for _ in range(3):
        await asyncio.sleep(0)
    assert work.finished == 1
    work.error = None
    assert await sf.run("dev", work) is work.outcome
    assert work.calls == 2


def test_max_waiters_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_waiters"):
        SingleFlight(FakeClock(), max_waiters=0)


async def test_forget_drops_one_keys_cooldown_and_the_running_flight_sets_none() -> None:
    sf = SingleFlight(FakeClock(), cooldown_seconds=30)
    for key in ("a", "b"):
        denied = Work(error=Denied("no"))
        denied.release.set()
        with pytest.raises(Denied):
            await sf.run(key, denied)
    sf.forget("a")
    ok = Work()
    ok.release.set()
    assert await sf.run("a", ok) is ok.outcome
    with pytest.raises(DeniedCooldown):
        await sf.run("b", ok)
    cancelled = Work(error=Denied("profile cleared"))
    (task,) = await burst(sf, "a", cancelled, 1)
    sf.forget("a")  # while it runs: its Denied must not start a cooldown
    cancelled.release.set()
    with pytest.raises(Denied):
        await task
    assert await sf.run("a", ok) is ok.outcome
