"""VaultService.clear (`vaultd clear PROFILE`): one profile's session, approvals and cooldown.

Fakes at every port, as in test_service.py (these tests are about the service's own state).
"""

from __future__ import annotations

import asyncio

import pytest

from vaultd.core.access_policy import default_policy
from vaultd.core.model import Profile, ProfileKind
from vaultd.core.otp_ledger import OtpLedger
from vaultd.core.service import Ports, VaultService
from vaultd.errors import Denied, UnknownProfile

from .test_service import ME, SERIAL, Audit, Clock, Secrets, State, Sts, run


def make(audit: Audit, sts: Sts) -> VaultService:
    profiles = {
        name: Profile(name, ProfileKind.SESSION, credentials=name, mfa_serial=SERIAL)
        for name in ("dev", "ops")
    }
    ports = Ports(Clock(), sts, Secrets(), audit, State(), run, run)
    return VaultService(profiles, ports, ledger=OtpLedger(), out_of_band=True)


async def session(service: VaultService, profile: str, code: str) -> None:
    async def approve() -> None:
        while not service.approvals.pending():
            await asyncio.sleep(0.01)
        await service.approve(service.approvals.pending()[0].id, code)

    await asyncio.gather(service.credentials(profile, ME), approve())


def cached(service: VaultService) -> list[str]:
    return [e.key for e in service.cache.entries()]


async def test_clear_drops_only_that_profiles_session_and_is_audited() -> None:
    audit, sts = Audit(), Sts()
    service = make(audit, sts)
    await session(service, "dev", "111111")
    await session(service, "ops", "222222")
    assert cached(service) == ["profile:dev", "profile:ops"]
    await service.clear("dev")
    assert cached(service) == ["profile:ops"]
    assert audit.events[-1] == "clear"
    await service.credentials("ops", ME)  # still cached: no approval, no STS call
    assert sts.calls == ["111111", "222222"]


async def test_clear_cancels_the_profiles_pending_approval_without_a_cooldown() -> None:
    audit, sts = Audit(), Sts()
    service = make(audit, sts)
    waiting = asyncio.ensure_future(service.credentials("dev", ME))
    while not service.approvals.pending():
        await asyncio.sleep(0.01)
    await service.clear("dev")
    with pytest.raises(Denied, match="profile cleared"):
        await waiting
    # The next request is asked afresh (a deny would have started a cooldown).
    await session(service, "dev", "333333")
    assert cached(service) == ["profile:dev"]


async def test_clear_of_an_unknown_profile_is_refused() -> None:
    service = make(Audit(), Sts())
    with pytest.raises(UnknownProfile, match="no profile 'nope'"):
        await service.clear("nope")


async def test_reload_drops_only_changed_and_removed_profiles_and_their_cooldowns() -> None:
    audit, sts = Audit(), Sts()
    service = make(audit, sts)
    await session(service, "dev", "111111")
    await session(service, "ops", "222222")
    await service.clear("ops")  # drops the session: the next ops request asks
    asked = asyncio.ensure_future(service.credentials("ops", ME))
    while not service.approvals.pending():
        await asyncio.sleep(0.01)
    await service.deny(service.approvals.pending()[0].id)  # starts the ops cooldown
    with pytest.raises(Denied):
        await asyncio.wait_for(asked, 5)
    assert service.cooldowns() == {"ops": 30}
    longer = Profile(
        "ops", ProfileKind.SESSION, credentials="ops", mfa_serial=SERIAL, duration_seconds=7200
    )
    added = Profile("new", ProfileKind.SESSION, credentials="new", mfa_serial=SERIAL)
    policy = default_policy()  # the one it runs with
    profiles = {"dev": service.profiles["dev"], "ops": longer, "new": added}
    summary = await service.reload(profiles, policy, out_of_band=True)
    assert summary == {"added": ["new"], "removed": [], "changed": ["ops"]}
    assert audit.events[-1] == "reload"
    assert cached(service) == ["profile:dev"] and service.cooldowns() == {}
    await service.credentials("dev", ME)  # still cached: no approval, no STS call
    await session(service, "ops", "333333")  # no cooldown left: asked again
    assert sts.calls == ["111111", "222222", "333333"]
    assert (await service.reload({}, policy, out_of_band=True))["removed"] == ["dev", "new", "ops"]
    assert cached(service) == []
