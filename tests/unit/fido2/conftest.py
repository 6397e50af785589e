"""Shared fixtures: software CTAP2 authenticators in tmp_path, driven through python-fido2."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fido2.ctap2.base import Ctap2
from fido2.ctap2.pin import ClientPin

from vaultd.fido2.ceremony import AssertionResult, assert_presence, enroll
from vaultd.fido2.verify import EnrolledCredential
from vaultd.testing.soft_ctap2 import SoftCtap2Device

TOUCH_DELAY = 0.02
RP_ID = "vaultd"
CHALLENGE = bytes(range(32))


@pytest.fixture
def make_device(tmp_path: Path) -> Callable[..., SoftCtap2Device]:
    """Create a fresh software authenticator (touched after a short delay)."""
    count = 0

    def make(**kwargs: Any) -> SoftCtap2Device:
        nonlocal count
        count += 1
        device = SoftCtap2Device(tmp_path / f"authenticator{count}.json", **kwargs)
        device.set_touch("auto", TOUCH_DELAY)
        return device

    return make


@pytest.fixture
def device(make_device: Callable[..., SoftCtap2Device]) -> SoftCtap2Device:
    return make_device()


@pytest.fixture
def cred(device: SoftCtap2Device) -> EnrolledCredential:
    return enroll(device, name="key1", user_name="alice", pin=None)


def _approve(
    devices: list[SoftCtap2Device], creds: list[EnrolledCredential], **overrides: Any
) -> AssertionResult:
    kwargs: dict[str, Any] = {
        "challenge": CHALLENGE,
        "approval_id": "approval-1",
        "rp_id": RP_ID,
        "require_uv": False,
        "pin": None,
        "on_prompt": lambda: None,
        "cancel": threading.Event(),
        "timeout": 10.0,
    }
    kwargs.update(overrides)
    return assert_presence(list(devices), creds, **kwargs)


@pytest.fixture
def approve() -> Callable[..., AssertionResult]:
    """assert_presence with test defaults; keyword arguments override them."""
    return _approve


def _set_pin(device: SoftCtap2Device, pin: str) -> None:
    ClientPin(Ctap2(device)).set_pin(pin)


@pytest.fixture
def set_pin() -> Callable[[SoftCtap2Device, str], None]:
    """Set the authenticator PIN through python-fido2's own ClientPin (protocol 2 if offered)."""
    return _set_pin
