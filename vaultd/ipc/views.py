"""The success reply of every socket op and the views nested in them (protocol version 1).

Pure types: :mod:`vaultd.ipc.protocol` names each op's reply type in its declaration and
:mod:`vaultd.ipc.replies` checks replies against them.
"""

from __future__ import annotations

from typing import Literal, TypedDict


class RequesterView(TypedDict):
    """The process behind a request (``vaultd.core.model.Requester``)."""

    pid: int
    uid: int
    executable: str
    cwd: str
    parent_pid: int
    parent_command: str
    parent_executable: str


class ApprovalView(TypedDict):
    """A pending approval (``Approval.as_dict``); ``joined`` lists the processes that wait on
    it too (the first ``MAX_JOINED``), ``joined_more`` counts the rest."""

    id: str
    profile: str
    action: str
    methods: str
    state: str
    created_at: str
    expires_at: str
    requested_by: RequesterView
    mfa_serial: str
    joined: list[RequesterView]
    joined_more: int


class ProgressView(TypedDict):
    """An answered approval on its way to a session: ``state`` is the last progress event."""

    id: str
    profile: str
    state: str
    message: str


class GrantView(TypedDict):
    """A break-glass grant's public facts (``Grant.as_dict``)."""

    id: str
    profile: str
    reason: str
    expires_at: str
    read: bool


class ProfileStatus(TypedDict):
    """One profile in ``status``: its cached session's expiry, if any."""

    name: str
    kind: str
    approval: str
    expires_at: str | None
    seconds_left: int | None
    target_account: str | None
    root_task: str | None
    root: bool


class ReportRowView(TypedDict):
    """One credential report row (``vaultd.core.report``); the key id is masked."""

    name: str
    kind: str
    access_key_id: str
    created: str
    last_rotated: str | None
    last_used: str | None
    age_days: int
    mfa_method: list[str]
    rotation_due: bool
    profiles: list[str]
    authenticators: int
    authenticator_last_used: str | None


class RecordRow(TypedDict):
    """A stored record's non-secret facts (``vaultd.core.model.record_rows``)."""

    name: str
    kind: str
    key_id: str
    created: str


class CredentialProcessOutput(TypedDict):
    """The ``credential_process`` Version 1 document: session credentials only (docs/threat-model.md
    AWS contract)."""

    Version: Literal[1]
    AccessKeyId: str
    SecretAccessKey: str
    SessionToken: str
    Expiration: str


class CredentialsReply(TypedDict):
    """``credentials``, ``exec`` and ``federation``: the ready-made document."""

    output: CredentialProcessOutput


class EmptyReply(TypedDict):
    """An acknowledgement with no fields."""


class UnlockReply(TypedDict):
    """``unlock``: ``already_unlocked`` when the vault was unsealed and the token untouched."""

    already_unlocked: bool


class ApprovalsReply(TypedDict):
    """``approvals``: pending ones, answered ones on their way, and deny cooldowns (seconds
    left, by profile)."""

    approvals: list[ApprovalView]
    in_progress: list[ProgressView]
    cooldowns: dict[str, int]


class StatusReply(TypedDict):
    """``status``: the service's state plus the daemon's own."""

    sealed: bool
    sealed_reason: str | None
    now: str
    profiles: list[ProfileStatus]
    approvals: list[ApprovalView]
    touch_needed: list[str]
    in_progress: list[ProgressView]
    cooldowns: dict[str, int]
    keystore: str
    hardware: bool
    grants: list[GrantView]
    token_label: str
    socket: str
    pid: int
    config_digest: str


class BreakGlassReply(TypedDict):
    """``breakglass``: the opened grant and its credentials, sent once to this connection only
    (no op hands a grant out by id: ``docs/threat-model.md`` T31)."""

    grant: GrantView
    output: CredentialProcessOutput


class AuditTailReply(TypedDict):
    """``audit_tail``: audit records, newest first (open shapes; see the module docstring)."""

    records: list[dict[str, object]]


class RotateReply(TypedDict):
    """``rotate`` (``RotationResult.as_dict``); key ids are masked."""

    name: str
    old_key_id: str
    new_key_id: str
    rotated_at: str
    old_key_deleted: bool
    used_mfa: bool
    message: str


class RecordsReply(TypedDict):
    """``records``: the store's records, for `vaultd list`."""

    records: list[RecordRow]


class ReportReply(TypedDict):
    """``report``: rows and the same as CSV."""

    rows: list[ReportRowView]
    csv: str
