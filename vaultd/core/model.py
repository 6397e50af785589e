"""Frozen domain types shared by the core, the adapters and the daemon."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

PROFILE_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
RECORD_NAME_RE = PROFILE_NAME_RE
CODE_RE = re.compile(r"^[0-9]{6}$")


class ProfileKind(StrEnum):
    """How a profile gets its session."""

    SESSION = "session"  # GetSessionToken with the stored long-lived keys
    ROLE = "role"  # AssumeRole, chained from the source profile or directly with MFA
    ROOT = "root"  # break-glass only; never served through credential_process
    ASSUME_ROOT = "assume_root"  # break-glass only: sts:AssumeRoot into a member account


class ApprovalMethod(StrEnum):
    """How a human proves presence before an MFA session is made."""

    CODE = "code"  # the user types the AWS MFA code
    TOUCH = "touch"  # a FIDO2 touch; the daemon generates the code from a sealed seed
    TOUCH_OR_CODE = "touch-or-code"


class RecordKind(StrEnum):
    """Kinds of sealed record in the store."""

    KEY_PAIR = "key_pair"
    TOTP_SEED = "totp_seed"
    FIDO2_CREDENTIAL = "fido2_credential"


@dataclass(frozen=True, slots=True)
class Profile:
    """A configured profile, in AWS config vocabulary."""

    name: str
    kind: ProfileKind
    credentials: str | None = None
    source_profile: str | None = None
    role_arn: str | None = None
    mfa_serial: str | None = None
    duration_seconds: int | None = None
    external_id: str | None = None
    role_session_name: str | None = None
    region: str | None = None
    approval: ApprovalMethod = ApprovalMethod.CODE
    target_account: str | None = None  # ASSUME_ROOT: the member account
    root_task: str | None = None  # ASSUME_ROOT: the root-task policy ARN


@dataclass(frozen=True, slots=True)
class LongTermCredentials:
    """A long-lived access key pair. Never leaves the daemon."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    root: bool = False


@dataclass(frozen=True, slots=True)
class SessionCredentials:
    """Time-bounded credentials from STS."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expiration: datetime

    def __post_init__(self) -> None:
        if self.expiration.tzinfo is None:
            raise ValueError("SessionCredentials.expiration must be timezone-aware")

    def seconds_left(self, now: datetime) -> float:
        """Seconds until expiry at wall time ``now`` (negative once expired)."""
        return (self.expiration - now).total_seconds()


@dataclass(frozen=True, slots=True)
class RecordInfo:
    """Non-secret facts about a stored record (shown by `vaultd list`)."""

    kind: RecordKind
    name: str
    created: datetime
    masked_id: str = ""
    root: bool = False


def record_rows(infos: list[RecordInfo]) -> list[dict[str, str]]:
    """The `vaultd list` rows (the ``records`` reply), by kind and name; never a secret."""
    return [
        {
            "name": info.name,
            "kind": "root_key_pair" if info.root else info.kind.value,
            "key_id": info.masked_id,
            "created": info.created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        for info in sorted(infos, key=lambda i: (i.kind.value, i.name))
    ]


@dataclass(frozen=True, slots=True)
class Requester:
    """The process behind a request, read from the socket's peer credentials and /proc."""

    pid: int
    uid: int
    executable: str = ""
    cwd: str = ""
    parent_pid: int = 0
    parent_command: str = ""
    parent_executable: str = ""


@dataclass(frozen=True, slots=True)
class ClientDisplay:
    """The graphical session a client without a terminal runs in, as the client reports it.

    ``display`` is its ``DISPLAY`` (``"aqua"`` on macOS), ``wayland_display`` its
    ``WAYLAND_DISPLAY``; display names are not secrets.  A prompt dialog is drawn there.
    """

    display: str = ""
    wayland_display: str = ""


@dataclass(frozen=True, slots=True)
class CodePrompt:
    """What a prompt dialog shows when it asks for an MFA code (docs/threat-model.md T2)."""

    driver: str
    approval_id: str
    profile: str
    serial: str
    requester: Requester
    where: ClientDisplay
    timeout: float


def mask_key(access_key_id: str) -> str:
    """Mask an access key id for display: first four and last four characters."""
    if len(access_key_id) <= 8:
        return "*" * len(access_key_id)
    return f"{access_key_id[:4]}{'*' * (len(access_key_id) - 8)}{access_key_id[-4:]}"


def utc(dt: datetime) -> datetime:
    """Return ``dt`` as an aware UTC datetime (naive values are taken as UTC)."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)
