"""A record open that waits for a touch on the vault key is announced, late (issue 14).

The key is a fake (the real card is driven in ``tests/integration/piv/test_touch_announced.py``):
its open blocks until the test lets it go, on a thread as the daemon's token worker would.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from vaultd.core.approvals import ApprovalMethod
from vaultd.core.model import LongTermCredentials, Profile, ProfileKind
from vaultd.core.otp_ledger import OtpLedger
from vaultd.core.service import TOKEN_TOUCH, Ports, TokenWait, VaultService
from vaultd.testing.clock import FakeClock

from .test_approval_unavailable import (
    DEV_SERIAL,
    SCRIPT,
    Audit,
    SpentStepSeeds,
    State,
    Sts,
    TouchedKey,
    bounded,
    run,
)


class WaitingKey:
    """Opens a record once :attr:`touched` is set (or at once when it is set already)."""

    def __init__(self) -> None:
        self.touched = threading.Event()

    def key_pair(self, name: str) -> LongTermCredentials:
        assert self.touched.wait(10), "the touch never came"
        return LongTermCredentials("AKIAEXAMPLE000000001", "x" * 40)


def service(key: WaitingKey, touch_possible: bool, notified: list[str]) -> VaultService:
    clock = FakeClock()
    ports = Ports(
        clock,
        Sts(clock),
        key,
        Audit(),
        State(),
        asyncio.to_thread,
        run,
        gate=TouchedKey(),
        codes=SpentStepSeeds(),
        notify=lambda event, *_: notified.append(event),
        touch_possible=lambda: touch_possible,
    )
    profile = Profile(
        "dev", ProfileKind.SESSION, credentials="dev", mfa_serial=DEV_SERIAL,
        approval=ApprovalMethod.TOUCH,
    )  # fmt: skip
    return VaultService({"dev": profile}, ports, ledger=OtpLedger())


async def test_a_late_open_on_a_card_is_announced_before_the_touch() -> None:
    key, notified, told = WaitingKey(), [], []
    svc = service(key, True, notified)

    async def on_event(kind: str, subject: object, message: str = "") -> None:
        told.append((kind, subject, message, svc.in_progress()))
        if kind == TOKEN_TOUCH:
            key.touched.set()  # the user touches once told to

    await bounded(svc.credentials("dev", SCRIPT, on_event=on_event))
    kind, subject, message, status = told[0]
    assert (kind, subject) == (TOKEN_TOUCH, TokenWait("dev"))
    assert message == "touch your YubiKey to open the keys of profile dev"
    assert status[0]["state"] == TOKEN_TOUCH
    assert notified[0] == "touch_needed"
    assert svc.in_progress() == []


@pytest.mark.parametrize("touch_possible", [False, True])
async def test_an_open_that_needs_no_touch_says_nothing(touch_possible: bool) -> None:
    """A quick open on a card, or a slow one on a token without touch: no line, no notice."""
    key, notified, told = WaitingKey(), [], []
    if touch_possible:
        key.touched.set()
    else:
        asyncio.get_running_loop().call_later(0.7, key.touched.set)  # past the late prompt
    svc = service(key, touch_possible, notified)

    async def on_event(kind: str, subject: object, message: str = "") -> None:
        told.append(kind)

    await bounded(svc.credentials("dev", SCRIPT, on_event=on_event))
    assert TOKEN_TOUCH not in told
    assert "touch_needed" in notified  # the FIDO2 approval's own touch, not the card's
    assert notified.count("touch_needed") == 1
