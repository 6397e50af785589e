"""The daemon's use cases in the core (issue 12), over fakes at every port: rotation checks the
access policy before any prompt and audits its MFA session as kept, not released; the unlock
rate limit.  The ports are fakes because these tests are about the use cases' order of steps;
rotation against real IAM (moto) is in tests/integration/rotation.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from vaultd.core.access_policy import parse_policy
from vaultd.core.model import LongTermCredentials, Profile, ProfileKind
from vaultd.core.otp_ledger import OtpLedger
from vaultd.core.rotation import rotate
from vaultd.core.service import Ports, VaultService
from vaultd.core.unlock_limit import UnlockLimiter
from vaultd.errors import PolicyDenied, RateLimited
from vaultd.testing.clock import FakeClock

from .test_service import ME, SERIAL, Audit, Clock, Secrets, State, Sts, approve_when_open, run


class NoIam:
    """Rotation must never get this far in these tests."""

    def create_access_key(self, creds: object) -> LongTermCredentials:
        raise AssertionError("IAM called")

    def delete_access_key(self, creds: object, access_key_id: str) -> None:
        raise AssertionError("IAM called")

    def get_caller_identity(self, creds: object) -> str:
        raise AssertionError("IAM called")


class NoKeys:
    def load_for_rotation(self, name: str) -> LongTermCredentials:
        raise AssertionError("store read")

    def replace_key_pair(self, name: str, creds: LongTermCredentials) -> None:
        raise AssertionError("store written")


def service(audit: Audit, statements: list[dict[str, object]] | None = None) -> VaultService:
    profile = Profile("dev", ProfileKind.SESSION, credentials="dev", mfa_serial=SERIAL)
    policy = None
    if statements is not None:
        policy = parse_policy(json.dumps({"Version": "2012-10-17", "Statement": statements}))
    return VaultService(
        {"dev": profile},
        Ports(Clock(), Sts(), Secrets(), audit, State(), run, run),
        ledger=OtpLedger(),
        access_policy=policy,
        out_of_band=True,
    )


async def test_a_denied_rotation_is_refused_before_any_prompt() -> None:
    audit = Audit()
    svc = service(
        audit,
        [
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Effect": "Deny", "Action": "vaultd:Rotate", "Resource": "*"},
        ],
    )
    with pytest.raises(PolicyDenied):
        await rotate(svc, "dev", ME, on_event=None, keys=NoKeys(), iam=NoIam())
    assert svc.approvals.pending() == []
    assert "approval_opened" not in audit.events
    assert audit.events == ["policy_refused"]


async def test_the_rotation_session_is_audited_as_kept_not_released() -> None:
    audit = Audit()
    svc = service(audit)
    rotation = asyncio.ensure_future(
        rotate(svc, "dev", ME, on_event=None, keys=NoKeys(), iam=NoIam())
    )
    await approve_when_open(svc, "123456")
    with pytest.raises(AssertionError, match="store read"):  # the session is made; then NoKeys
        await rotation
    assert "release" not in audit.events
    assert "session_used" in audit.events


def test_unlock_is_limited_after_five_wrong_pins_in_five_minutes() -> None:
    clock = FakeClock()
    limit = UnlockLimiter(clock)
    for _ in range(5):
        limit.check()
        limit.failed()
    with pytest.raises(RateLimited) as raised:
        limit.check()
    assert raised.value.retry_after == pytest.approx(300.0)
    clock.advance(300.0)
    assert limit.check() == 0
