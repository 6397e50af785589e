"""Break-glass with ``sts:AssumeRoot``: a root session in an Organizations member account.

With centralized root access, the management account (or the IAM delegated administrator)
calls AssumeRoot and gets a root session in a member account, scoped to one root-task policy,
for at most 900 s, on a Regional STS endpoint only (docs/threat-model.md T18).  AssumeRoot
takes no MFA parameters: the MFA context is the calling session's, so vaultd makes a *fresh*
GetSessionToken with the source profile's MFA device for every grant (never a cached session:
the MFA age is part of the proof), then AssumeRoot with it.

Pure checks (:func:`task_arn`, :func:`check_target`) serve the settings loader, the CLI and the
daemon alike, so a bad profile is refused before anything is asked of the user.
:func:`open_session` is the use case the break-glass desk calls once the reason is checked.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from vaultd.core import serving
from vaultd.core.model import Profile, Requester, SessionCredentials
from vaultd.core.otp_ledger import step_for
from vaultd.core.service import VaultService
from vaultd.errors import BreakGlassOnly, ConfigError

TASK_ARN_PREFIX = "arn:aws:iam::aws:policy/root-task/"
ROOT_TASKS: Mapping[str, str] = {
    "IAMAuditRootUserCredentials": (
        "list the root user's credentials and MFA devices; change nothing"
    ),
    "IAMCreateRootUserPassword": "create a root password (account recovery); nothing else",
    "IAMDeleteRootUserCredentials": "delete the root password, access keys, certificates and MFA",
    "S3UnlockBucketPolicy": "delete a bucket policy that denies every principal",
    "SQSUnlockQueuePolicy": "delete a queue policy that denies every principal",
}
"""The AWS managed root-task policies, each with what it permits (one line)."""

MAX_SECONDS = 900
DEFAULT_SECONDS = 900
FRESH_MFA_SECONDS = serving.MIN_DURATION_SECONDS
"""The fresh MFA session AssumeRoot is called with lives as short as STS allows."""
DEFAULT_REGION = "us-east-1"
ACCOUNT_RE = re.compile(r"^[0-9]{12}$")
_MFA_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::([0-9]{12}):mfa/(.+)$")
ROOT_MFA_NAME = "root-account-mfa-device"
"""The name AWS gives a root user's virtual MFA device."""


def task_arn(task: str) -> str:
    """The root-task policy ARN for a short name or a full ARN; ``ConfigError`` otherwise."""
    name = task.removeprefix(TASK_ARN_PREFIX)
    if name not in ROOT_TASKS:
        raise ConfigError(
            f"assume_root_task = {task!r} is not an AWS root-task policy; use one of "
            f"{', '.join(ROOT_TASKS)} (or {TASK_ARN_PREFIX}NAME)"
        )
    return TASK_ARN_PREFIX + name


def task_name(arn: str) -> str:
    """The short name of a root-task policy ARN."""
    return arn.removeprefix(TASK_ARN_PREFIX)


def mfa_account(serial: str | None) -> str | None:
    """The account in an MFA device ARN (``arn:aws:iam::ACCOUNT:mfa/NAME``), else None."""
    match = _MFA_ARN_RE.match(serial or "")
    return match.group(1) if match else None


def is_root_mfa(serial: str | None) -> bool:
    """Whether an MFA device ARN is a root user's (AWS refuses AssumeRoot from root)."""
    match = _MFA_ARN_RE.match(serial or "")
    return match is not None and match.group(2) == ROOT_MFA_NAME


def check_target(account: str, duration: int, source_serial: str | None) -> None:
    """Refuse a target account that is malformed or the caller's own, or a bad duration."""
    if not ACCOUNT_RE.fullmatch(account):
        raise ConfigError(f"assume_root_account = {account!r} must be a 12-digit account id")
    if account == mfa_account(source_serial):
        raise ConfigError(
            f"assume_root_account = {account!r} is the management account itself (the source "
            "profile's mfa_serial names it): AssumeRoot opens root sessions in member accounts"
        )
    if isinstance(duration, bool) or not 0 <= duration <= MAX_SECONDS:
        raise ConfigError(
            f"duration_seconds = {duration!r}: AssumeRoot sessions last 0-{MAX_SECONDS} s"
        )


@dataclass(frozen=True, slots=True)
class Target:
    """What one AssumeRoot call asks for."""

    account: str
    task_arn: str
    duration: int
    region: str

    def policy_context(self) -> dict[str, str]:
        """The condition keys ``vaultd:AssumeRoot`` is judged with."""
        return {"vaultd:TargetAccount": self.account, "vaultd:RootTask": task_name(self.task_arn)}


def target_of(
    profile: Profile, source: Profile, *, account: str | None, task: str | None
) -> Target:
    """The profile's target, with the account or task the requester picked instead."""
    assert profile.target_account is not None and profile.root_task is not None  # noqa: S101
    target = Target(
        account=account or profile.target_account,
        task_arn=task_arn(task or profile.root_task),
        duration=DEFAULT_SECONDS if profile.duration_seconds is None else profile.duration_seconds,
        region=source.region or DEFAULT_REGION,
    )
    check_target(target.account, target.duration, source.mfa_serial)
    return target


async def open_session(
    svc: VaultService,
    profile: Profile,
    requester: Requester,
    *,
    target: Target,
    code: str,
    touch: Callable[[], Awaitable[None]],
) -> SessionCredentials:
    """Policy, endpoint and key checks; then ``touch`` (FIDO2 with UV); then a fresh MFA
    session for the source profile with ``code``; then AssumeRoot.  Nothing is cached."""
    assert profile.source_profile is not None  # noqa: S101 - settings validation
    source = svc.profiles[profile.source_profile]
    serial, creds_name = source.mfa_serial, source.credentials
    assert serial is not None and creds_name is not None  # noqa: S101 - settings validation
    sts = svc.ports.sts
    await svc.run_io(lambda: sts.assume_root_endpoint(target.region))
    # Judged as after the touch: nothing is released unless the touch with UV follows.
    await svc.authorize(
        "vaultd:AssumeRoot", profile, requester, mfa_present=True, extra=target.policy_context()
    )
    keys = await svc.run_token(lambda: svc.ports.secrets.key_pair(creds_name))
    if keys.root:
        raise BreakGlassOnly(
            f"profile {source.name!r} holds root keys: AWS refuses AssumeRoot from root "
            "credentials; set source_profile to an IAM user of the management account"
        )
    svc.ledger.check_allowed(serial, svc.ports.clock.now())
    await touch()
    svc.ledger.check_and_mark_typed(serial, code, step_for(svc.ports.clock.now()))
    await svc.save_ledger()
    fresh = await svc.mfa_session(
        keys, serial, code, duration=FRESH_MFA_SECONDS, region=target.region
    )
    await svc.audit_event(
        "breakglass_assume_root",
        profile=profile.name,
        severity="critical",
        break_glass=True,
        target_account=target.account,
        task=task_name(target.task_arn),
        duration=target.duration,
        region=target.region,
    )
    session = await svc.run_io(
        lambda: sts.assume_root(
            fresh,
            target_principal=target.account,
            task_policy_arn=target.task_arn,
            duration_seconds=target.duration,
            region=target.region,
        )
    )
    serving.validate_expiration(session.expiration, svc.ports.clock.now())
    return session
