"""The declared success reply of every op (protocol version 1), and the check run before sending.

Pure code, like :mod:`vaultd.ipc.protocol`.  Each op's reply is a ``TypedDict`` in
:data:`REPLIES`: its fields and their types, nested views included.  :func:`check_reply` refuses
a reply with an undeclared, missing or mistyped field; the daemon runs it on every reply and
sends ``INTERNAL_ERROR`` instead of a reply that fails (docs/threat-model.md T28: no reply type can
carry a long-lived key pair, a TOTP seed or a PIN, and nothing undeclared slips out).

The one open shape is an audit record (``audit_tail``): the audit log's own lines, which hold
HMACs and masked ids by construction (docs/threat-model.md T5).  Their keys are still checked at any
depth against :data:`SECRET_FIELD_NAMES`.

Pushed events are declared the same way in :data:`EVENTS` and checked by :func:`check_event`
before the server writes them.

The ``credentials``, ``breakglass`` and ``federation`` replies carry the ``credential_process``
document (:class:`CredentialProcessOutput`); :func:`check_credential_output` insists on a
``SessionToken`` and an ``Expiration``, so a long-term key pair cannot pass as one.
"""

from __future__ import annotations

import hashlib
import json
import types
from collections.abc import Mapping
from datetime import datetime
from typing import (
    Final,
    Literal,
    TypedDict,
    Union,
    cast,
    get_args,
    get_origin,
    get_type_hints,
)

from vaultd.errors import ReplySchemaViolation
from vaultd.ipc.protocol import APPROVAL_PENDING, CREDENTIALS_PREFIX

SECRET_FIELD_NAMES: Final = frozenset(
    {"secretaccesskey", "awssecretaccesskey", "sessiontoken", "seed", "totpseed", "pin", "secret"}
)
"""Key names (lower case, ``_`` and ``-`` removed) never allowed in an open audit record."""


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
    """A pending approval (``Approval.as_dict``)."""

    id: str
    profile: str
    action: str
    methods: str
    state: str
    created_at: str
    expires_at: str
    requested_by: RequesterView


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


REPLIES: Final[Mapping[str, type]] = {
    "credentials": CredentialsReply,
    "exec": CredentialsReply,
    "approvals": ApprovalsReply,
    "approve": EmptyReply,
    "deny": EmptyReply,
    "status": StatusReply,
    "lock": EmptyReply,
    "unlock": UnlockReply,
    "events": EmptyReply,
    "rotate": RotateReply,
    "report": ReportReply,
    "records": RecordsReply,
    "breakglass": BreakGlassReply,
    "grant_end": EmptyReply,
    "audit_tail": AuditTailReply,
    "federation": CredentialsReply,
}
"""Each request op's success reply schema (every op of ``vaultd.ipc.protocol.OPS``)."""


class PendingEvent(TypedDict):
    """``approval_pending`` and ``touch_needed``, pushed to the waiting client."""

    id: str
    profile: str
    requester: RequesterView
    expires: str
    methods: str


class ProgressEvent(TypedDict):
    """``next_code_wait`` and ``calling_sts``: an answered request's next step, as a line to
    show."""

    id: str
    profile: str
    message: str


class ApprovalChange(TypedDict):
    """``approval_opened`` and ``approval_resolved``, pushed to the TUI."""

    approval: ApprovalView


EVENTS: Final[Mapping[str, type]] = {
    "subscribed": EmptyReply,
    APPROVAL_PENDING: PendingEvent,
    "touch_needed": PendingEvent,
    "next_code_wait": ProgressEvent,
    "calling_sts": ProgressEvent,
    "approval_opened": ApprovalChange,
    "approval_resolved": ApprovalChange,
}
"""Each pushed event's fields (besides ``v`` and ``event``)."""

_SCALARS: Final = (str, int, float, bool)


def check_reply(op: str, reply: Mapping[str, object] | bytes) -> None:
    """Raise ``ReplySchemaViolation`` unless ``reply`` matches ``op``'s declared reply.

    ``reply`` is what a handler returns: the success fields, or a complete reply body (the
    ``credentials`` fast path).  Messages name fields and types, never values.
    """
    schema = REPLIES.get(op)
    if schema is None:
        raise ReplySchemaViolation(f"op {op!r} has no declared reply schema")
    if isinstance(reply, bytes) and reply.startswith(CREDENTIALS_PREFIX) and reply[-1:] == b"}":
        if schema is not CredentialsReply:
            raise ReplySchemaViolation(f"op {op!r} does not reply with credentials")
        check_credential_output(reply[len(CREDENTIALS_PREFIX) : -1])
        return
    if isinstance(reply, bytes):
        fields = _body_fields(reply)
    else:
        fields = reply
    _check(fields, schema, op)


def check_event(name: str, fields: Mapping[str, object]) -> None:
    """Raise ``ReplySchemaViolation`` unless ``fields`` match the declared event ``name``."""
    schema = EVENTS.get(name)
    if schema is None:
        raise ReplySchemaViolation(f"event {name!r} has no declared schema")
    _check(fields, schema, name)


def check_credential_output(output: bytes) -> None:
    """Raise ``ReplySchemaViolation`` unless ``output`` is a session ``credential_process``
    document: exactly the five keys, a non-empty ``SessionToken`` and an ``Expiration``.

    A cached session is served many times with the same bytes, so the SHA-256 of outputs
    already checked is remembered (digests only, never the document; at most
    :data:`_CHECKED_MAX`).
    """
    digest = hashlib.sha256(output).digest()
    if digest in _checked:
        return
    _check_credential_document(output)
    if len(_checked) >= _CHECKED_MAX:
        _checked.pop(next(iter(_checked)))
    _checked[digest] = None


_CHECKED_MAX: Final = 256
_checked: dict[bytes, None] = {}
"""Digests of outputs that passed, oldest first."""


def _check_credential_document(output: bytes) -> None:
    try:
        document: object = json.loads(output)
    except (ValueError, RecursionError):
        raise ReplySchemaViolation("the credential_process output is not JSON") from None
    _check(document, CredentialProcessOutput, "output")
    fields = cast("dict[str, str]", document)
    if not fields["SessionToken"] or not _is_expiration(fields["Expiration"]):
        raise ReplySchemaViolation(
            "the credential_process output has no SessionToken or no valid Expiration: only "
            "session credentials are ever served"
        )


def _body_fields(body: bytes) -> Mapping[str, object]:
    try:
        obj: object = json.loads(body)
    except (ValueError, RecursionError):
        raise ReplySchemaViolation("the reply body is not JSON") from None
    if not isinstance(obj, dict) or obj.get("v") != 1 or obj.get("ok") is not True:
        raise ReplySchemaViolation("the reply body is not a version 1 success reply")
    return {k: v for k, v in obj.items() if k not in ("v", "ok")}


def _check(value: object, hint: object, path: str) -> None:
    """Check ``value`` against the type ``hint``; ``path`` names the place in messages."""
    origin = get_origin(hint)
    if hint is object:
        _check_open(value, path)
    elif hint is type(None):
        if value is not None:
            raise ReplySchemaViolation(f"{path}: must be null")
    elif origin is Literal:
        if not any(type(value) is type(arg) and value == arg for arg in get_args(hint)):
            raise ReplySchemaViolation(f"{path}: not one of the declared values")
    elif origin is Union or origin is types.UnionType:
        for arg in get_args(hint):
            try:
                _check(value, arg, path)
                return
            except ReplySchemaViolation:
                continue
        raise ReplySchemaViolation(f"{path}: matches no declared type")
    elif origin is list:
        if not isinstance(value, list):
            raise ReplySchemaViolation(f"{path}: must be a list")
        (item,) = get_args(hint)
        for i, element in enumerate(value):
            _check(element, item, f"{path}[{i}]")
    elif origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ReplySchemaViolation(f"{path}: must be an object")
        _, item = get_args(hint)
        for key, element in value.items():
            _check_key(key, path)
            _check(element, item, f"{path}.{key}")
    elif isinstance(hint, type) and hasattr(hint, "__required_keys__"):
        _check_fields(value, hint, path)
    elif hint in _SCALARS:
        _check_scalar(value, hint, path)
    else:
        raise ReplySchemaViolation(f"{path}: the schema uses an unsupported type {hint!r}")


def _check_scalar(value: object, hint: object, path: str) -> None:
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = type(value) is hint
    if not ok:
        name = getattr(hint, "__name__", str(hint))
        raise ReplySchemaViolation(f"{path}: must be of type {name}")


def _check_fields(value: object, schema: type, path: str) -> None:
    if not isinstance(value, Mapping):
        raise ReplySchemaViolation(f"{path}: must be an object")
    hints = get_type_hints(schema)
    undeclared = sorted(str(k) for k in value if k not in hints)
    if undeclared:
        raise ReplySchemaViolation(f"{path}: undeclared field(s) {', '.join(undeclared)}")
    required: frozenset[str] = getattr(schema, "__required_keys__", frozenset())
    missing = sorted(required - value.keys())
    if missing:
        raise ReplySchemaViolation(f"{path}: missing field(s) {', '.join(missing)}")
    for name, element in value.items():
        _check(element, hints[name], f"{path}.{name}")


def _check_key(key: str, path: str) -> None:
    if key.lower().replace("_", "").replace("-", "") in SECRET_FIELD_NAMES:
        raise ReplySchemaViolation(f"{path}: field {key!r} names a secret")


def _check_open(value: object, path: str) -> None:
    """Any JSON value whose object keys, at every depth, name no secret."""
    if isinstance(value, dict):
        for key, element in value.items():
            if not isinstance(key, str):
                raise ReplySchemaViolation(f"{path}: object keys must be strings")
            _check_key(key, path)
            _check_open(element, f"{path}.{key}")
    elif isinstance(value, list):
        for i, element in enumerate(value):
            _check_open(element, f"{path}[{i}]")
    elif value is not None and not isinstance(value, _SCALARS):
        raise ReplySchemaViolation(f"{path}: not a JSON value")


def _is_expiration(value: str) -> bool:
    """True if ``value`` is RFC 3339 UTC with ``Z`` and whole seconds (the output's format)."""
    try:
        datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return False
    return True
