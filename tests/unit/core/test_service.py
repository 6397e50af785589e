"""VaultService with fakes at every port (no token, no network): audit-before-release rules.

The STS client here is a fake because these tests are about what the service does around
it; the real adapters are exercised against moto and FakeSts in tests/integration.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest

from vaultd.core.model import (
    LongTermCredentials,
    Profile,
    ProfileKind,
    Requester,
    SessionCredentials,
)
from vaultd.core.otp_ledger import OtpLedger
from vaultd.core.service import Ports, VaultService
from vaultd.errors import AuditError, Denied, Sealed, UnknownProfile

T = TypeVar("T")
SERIAL = "arn:aws:iam::123456789012:mfa/alice"
ME = Requester(pid=1, uid=1000, executable="/usr/bin/aws")


class Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class Sts:
    def __init__(self) -> None:
        self.calls: list[str | None] = []

    def get_session_token(
        self, credentials: LongTermCredentials, **kw: object
    ) -> SessionCredentials:
        self.calls.append(kw["token_code"])  # type: ignore[arg-type]
        return SessionCredentials("ASIAFAKE", "s", "t", datetime.now(UTC) + timedelta(seconds=3600))

    def assume_role(self, credentials: object, **kw: object) -> SessionCredentials:
        raise AssertionError("not used here")


class Secrets:
    def key_pair(self, name: str) -> LongTermCredentials:
        return LongTermCredentials("AKIAEXAMPLE000000001", "x" * 40)


class Audit:
    def __init__(self, *, fail_on: str | None = None) -> None:
        self.events: list[str] = []
        self.timeouts: list[float] = []
        self.fail_on = fail_on

    def record(self, event: str, fields: Mapping[str, object]) -> None:
        if event == self.fail_on:
            raise AuditError("disk full")
        self.events.append(event)

    async def record_async(
        self, event: str, fields: Mapping[str, object], *, timeout: float
    ) -> None:
        self.timeouts.append(timeout)
        await asyncio.to_thread(self.record, event, fields)


class State:
    def save_ledger(self, data: dict[str, object]) -> None:
        pass


async def run(fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn)


def make(audit: Audit, sts: Sts, **kw: object) -> VaultService:
    profile = Profile("dev", ProfileKind.SESSION, credentials="dev", mfa_serial=SERIAL)
    ports = Ports(Clock(), sts, Secrets(), audit, State(), run, run)
    kw.setdefault("out_of_band", True)  # these tests answer through service.approve()
    return VaultService({"dev": profile}, ports, ledger=OtpLedger(), **kw)  # type: ignore[arg-type]


async def approve_when_open(service: VaultService, code: str) -> None:
    for _ in range(200):
        pending = service.approvals.pending()
        if pending:
            await service.approve(pending[0].id, code)
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no approval opened")


async def test_release_is_audited_before_credentials_are_returned() -> None:
    audit, sts = Audit(), Sts()
    service = make(audit, sts)
    creds, _ = await asyncio.gather(
        service.credentials("dev", ME), approve_when_open(service, "123456")
    )
    assert creds.access_key_id == "ASIAFAKE"
    assert sts.calls == ["123456"]
    assert audit.events[-1] == "release"


async def test_failed_release_record_releases_nothing() -> None:
    audit, sts = Audit(fail_on="release"), Sts()
    service = make(audit, sts)
    with pytest.raises(AuditError):
        await asyncio.gather(service.credentials("dev", ME), approve_when_open(service, "123456"))
    assert "release" not in audit.events


async def test_every_record_carries_the_audit_deadline() -> None:
    """The log enforces the deadline (see store/test_audit.py, fails_closed_after_its_timeout)."""
    audit, sts = Audit(fail_on="request"), Sts()
    service = make(audit, sts, audit_timeout=0.2)
    with pytest.raises(AuditError):
        await service.credentials("dev", ME)
    assert sts.calls == []
    assert audit.timeouts and set(audit.timeouts) == {0.2}


async def test_refusals_are_audited() -> None:
    audit = Audit()
    service = make(audit, Sts())
    with pytest.raises(UnknownProfile):
        await service.credentials("nope", ME)
    service.sealed = True
    with pytest.raises(Sealed):
        await service.credentials("dev", ME)
    assert audit.events == ["refused", "refused"]


async def test_a_chained_role_approval_names_its_source_profiles_mfa_device() -> None:
    dev = Profile("dev", ProfileKind.SESSION, credentials="dev", mfa_serial=SERIAL)
    admin = Profile(
        "admin",
        ProfileKind.ROLE,
        source_profile="dev",
        role_arn="arn:aws:iam::123456789012:role/Admin",
        duration_seconds=3600,
    )
    ports = Ports(Clock(), Sts(), Secrets(), Audit(), State(), run, run)
    profiles = {"dev": dev, "admin": admin}
    service = VaultService(profiles, ports, ledger=OtpLedger(), out_of_band=True)  # type: ignore[arg-type]
    request = asyncio.ensure_future(service.credentials("admin", ME))
    for _ in range(200):
        if pending := service.approvals.pending():
            break
        await asyncio.sleep(0.01)
    assert pending[0].mfa_serial == SERIAL
    assert pending[0].as_dict()["mfa_serial"] == SERIAL
    await service.deny(pending[0].id)
    with pytest.raises(Denied):
        await request
