"""Break-glass root access (docs/threat-model.md T18): a reason, two factors, a short session, read
once.

The flow: a root key pair's profile, a typed reason, a FIDO2 touch **with user
verification**, the root account's TOTP code, then GetSessionToken with the root keys for at
most an hour (default 15 minutes).  An AssumeRoot profile instead makes a fresh MFA session
for its source profile and calls AssumeRoot (:mod:`vaultd.core.assume_root`).  The session
becomes a *grant* whose credentials go once, to the connection that asked for it (in its
``breakglass`` reply), and are never held after: no op hands a grant out by id, so another
same-uid process that sees the grant in ``status`` cannot take it (docs/threat-model.md T31);
"end now" drops the grant.  Every step is audited with ``severity=critical`` and
``break_glass=true`` and announced through the notifier hook.  Root sessions are never cached
and never served to credential_process.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

from vaultd.core import assume_root, serving
from vaultd.core.approvals import new_approval_id
from vaultd.core.model import (
    CODE_RE,
    ApprovalMethod,
    Profile,
    ProfileKind,
    Requester,
    SessionCredentials,
    mask_key,
)
from vaultd.core.otp_ledger import step_for
from vaultd.core.service import VaultService, requester_fields
from vaultd.errors import (
    ApprovalUnavailable,
    BadRequest,
    BreakGlassOnly,
    CodeMalformed,
    ConfigError,
    GrantUsed,
    UnknownProfile,
    VaultError,
)

MIN_REASON = 8
MAX_REASON = 500
DEFAULT_SECONDS = 900
MAX_SECONDS = serving.ROOT_MAX_SECONDS


def checked_reason(reason: str) -> str:
    """The reason with its whitespace collapsed; ``BadRequest`` unless it has 8-500 characters."""
    reason = " ".join(reason.split())
    if not MIN_REASON <= len(reason) <= MAX_REASON:
        raise BadRequest(
            f"field reason: a reason of {MIN_REASON}-{MAX_REASON} characters is required"
        )
    return reason


def not_a_root_profile(name: str) -> BreakGlassOnly:
    """The refusal of break-glass for a profile that holds no root key pair."""
    return BreakGlassOnly(
        f"profile {name!r} is not a root profile: break-glass needs a profile whose "
        "credentials are a key pair stored with `vaultd add NAME --root`"
    )


@dataclass(frozen=True, slots=True)
class Grant:
    """One break-glass session's public facts, listed until ended or expired.

    Its credentials are not kept: they went to the requester with :meth:`BreakGlassDesk.open`.
    """

    id: str
    profile: str
    reason: str
    expires_at: datetime
    deadline_mono: float
    read: bool = True

    def as_dict(self) -> dict[str, object]:
        """Non-secret facts for status displays."""
        return {
            "id": self.id,
            "profile": self.profile,
            "reason": self.reason,
            "expires_at": self.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "read": self.read,
        }


class BreakGlassDesk:
    """Opens, hands out once, and ends break-glass grants."""

    def __init__(self, service: VaultService) -> None:
        self._svc = service
        self._grants: dict[str, Grant] = {}
        service.on_wipe(self.wipe)

    async def _audit(self, event: str, profile: str, **fields: object) -> None:
        await self._svc.audit_event(
            event, profile=profile, severity="critical", break_glass=True, **fields
        )
        self._svc.ports.notify(event, profile, "critical", f"break-glass {event} for {profile}")

    def _root_profile(self, name: str) -> Profile:
        profile = self._svc.profiles.get(name)
        if profile is None:
            raise UnknownProfile(f"no profile {name!r} in the vaultd config")
        if profile.kind is ProfileKind.ASSUME_ROOT:
            return profile
        if profile.credentials is None or profile.role_arn is not None:
            raise not_a_root_profile(name)
        return profile

    # Long: the break-glass sequence (checks, both factors, grant, its audit trail) reads in order.
    async def open(
        self,
        profile_name: str,
        requester: Requester,
        *,
        reason: str,
        code: str,
        pin: str | None,
        account: str | None = None,
        task: str | None = None,
    ) -> tuple[Grant, SessionCredentials]:
        """Check both factors, make the root session, and return its grant and credentials.

        The credentials are for ``requester``'s connection only; they are not kept here.
        ``account`` and ``task`` replace an AssumeRoot profile's member account and task.
        """
        svc = self._svc
        reason = checked_reason(reason)
        if not CODE_RE.fullmatch(code):
            raise CodeMalformed("the root MFA code is exactly 6 ASCII digits")
        profile = self._root_profile(profile_name)
        target = self._target(profile, account, task)
        client = requester_fields(requester)
        await self._audit("breakglass_requested", profile.name, reason=reason, client=client)
        try:
            if target is None:
                session = await self._root_keys_session(profile, requester, code, pin)
            else:
                session = await assume_root.open_session(
                    svc,
                    profile,
                    requester,
                    target=target,
                    code=code,
                    touch=lambda: self._touch_factor(profile, requester, pin),
                )
        except VaultError as exc:
            await self._audit("breakglass_refused", profile.name, outcome=exc.code, client=client)
            raise
        left = session.seconds_left(svc.ports.clock.now())
        grant = Grant(
            id=new_approval_id(),
            profile=profile.name,
            reason=reason,
            expires_at=session.expiration,
            deadline_mono=svc.ports.clock.monotonic() + left,
        )
        self._grants[grant.id] = grant
        await self._audit(
            "breakglass_granted",
            profile.name,
            grant=grant.id,
            session_key_id=mask_key(session.access_key_id),
            expiration=grant.as_dict()["expires_at"],
            client=client,
        )
        await self._audit("breakglass_read", profile.name, grant=grant.id, client=client)
        return grant, session

    def _target(
        self, profile: Profile, account: str | None, task: str | None
    ) -> assume_root.Target | None:
        """An AssumeRoot profile's checked target; None for stored root keys (whose duration
        is checked here).  Both refuse before anything is audited or asked."""
        if profile.kind is ProfileKind.ASSUME_ROOT:
            assert profile.source_profile is not None  # noqa: S101 - settings validation
            source = self._svc.profiles[profile.source_profile]
            return assume_root.target_of(profile, source, account=account, task=task)
        if account is not None or task is not None:
            raise BadRequest(
                f"fields account and task: profile {profile.name!r} holds stored root keys; "
                "a member account and a task apply to AssumeRoot profiles only"
            )
        duration = profile.duration_seconds or DEFAULT_SECONDS
        if duration > MAX_SECONDS:
            raise ConfigError(
                f"profiles.{profile.name}.duration_seconds={duration}: root sessions last at "
                f"most {MAX_SECONDS} s"
            )
        return None

    async def _root_keys_session(
        self, profile: Profile, requester: Requester, code: str, pin: str | None
    ) -> SessionCredentials:
        """GetSessionToken with the profile's stored root keys, after the touch and the code."""
        svc = self._svc
        credentials_name, serial = profile.credentials, profile.mfa_serial
        assert credentials_name is not None and serial is not None  # noqa: S101 - settings
        duration = profile.duration_seconds or DEFAULT_SECONDS
        keys = await svc.run_token(lambda: svc.ports.secrets.key_pair(credentials_name))
        if not keys.root:
            raise BreakGlassOnly(
                f"{credentials_name!r} is not a root key pair: use credential_process "
                "for IAM users; break-glass is for root credentials"
            )
        svc.ledger.check_allowed(serial, svc.ports.clock.now())
        await self._touch_factor(profile, requester, pin)
        await svc.authorize("vaultd:BreakGlass", profile, requester, mfa_present=True)
        svc.ledger.check_and_mark_typed(serial, code, step_for(svc.ports.clock.now()))
        await svc.save_ledger()
        return await svc.mfa_session(keys, serial, code, duration=duration, region=profile.region)

    async def _touch_factor(self, profile: Profile, requester: Requester, pin: str | None) -> None:
        """The FIDO2 touch with user verification, audited as a break-glass factor."""
        await self._touch_with_uv(profile, requester, pin)
        await self._audit("breakglass_factor", profile.name, factor="fido2_uv")

    async def _touch_with_uv(self, profile: Profile, requester: Requester, pin: str | None) -> None:
        svc = self._svc
        gate = svc.ports.gate
        if gate is None:
            raise ApprovalUnavailable("break-glass needs a FIDO2 authenticator: none is set up")
        approval = svc.approvals.open(
            profile.name,
            "break_glass",
            requester,
            ApprovalMethod.TOUCH,
            mfa_serial=profile.mfa_serial or "",
        )
        cancel = threading.Event()
        timeout = max(0.0, approval.deadline_mono - svc.ports.clock.monotonic())
        try:
            await svc.run_io(
                lambda: gate.approve(
                    approval.id,
                    require_uv=True,
                    pin=pin,
                    on_prompt=lambda: svc.ports.notify(
                        "touch_needed", profile.name, "critical", "break-glass: touch your key"
                    ),
                    cancel=cancel,
                    timeout=timeout,
                )
            )
        except VaultError:
            svc.approvals.deny(approval.id)
            raise
        finally:
            cancel.set()
        svc.approvals.approve(approval.id, code=None)

    async def end(self, grant_id: str) -> None:
        """Drop a grant now (the STS session itself cannot be recalled; it is short)."""
        grant = self._grants.pop(grant_id, None)
        if grant is None:
            raise GrantUsed(f"grant {grant_id} is not active")
        await self._audit("breakglass_ended", grant.profile, grant=grant_id)

    def wipe(self) -> None:
        """Lock or seal: every grant goes."""
        self._grants.clear()

    def active(self) -> list[dict[str, object]]:
        """Grants not yet expired (no secrets)."""
        mono = self._svc.ports.clock.monotonic()
        for gid in [g.id for g in self._grants.values() if mono >= g.deadline_mono]:
            self._grants.pop(gid)
        return [g.as_dict() for g in self._grants.values()]
