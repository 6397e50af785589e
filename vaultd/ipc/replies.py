"""The declared success reply of every op (protocol version 1), and the check run before sending.

Pure code, like :mod:`vaultd.ipc.protocol`.  Each op's reply is the ``TypedDict`` (from
:mod:`vaultd.ipc.views`) named in the op's declaration; :data:`REPLIES` collects them.
:func:`check_reply` refuses a reply with an undeclared, missing or mistyped field; the daemon
runs it on every reply and sends ``INTERNAL_ERROR`` instead of a reply that fails
(docs/threat-model.md T28: no reply type can carry a long-lived key pair, a TOTP seed or a PIN,
and nothing undeclared slips out).

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
from vaultd.ipc.protocol import APPROVAL_PENDING, CREDENTIALS_PREFIX, OP_TABLE
from vaultd.ipc.views import ApprovalView, CredentialsReply, EmptyReply, RequesterView
from vaultd.ipc.views import CredentialProcessOutput as CredentialProcessOutput

SECRET_FIELD_NAMES: Final = frozenset(
    {"secretaccesskey", "awssecretaccesskey", "sessiontoken", "seed", "totpseed", "pin", "secret"}
)
"""Key names (lower case, ``_`` and ``-`` removed) never allowed in an open audit record."""


REPLIES: Final[Mapping[str, type]] = {name: spec.reply for name, spec in OP_TABLE.items()}
"""Each request op's success reply schema, from its declaration in :mod:`vaultd.ipc.protocol`."""


class PendingEvent(TypedDict):
    """``approval_pending`` and ``touch_needed``, pushed to the waiting client; ``also_waiting``
    (to the waiting clients with a terminal) names, as ``requester``, a process that joined."""

    id: str
    profile: str
    requester: RequesterView
    expires: str
    methods: str
    mfa_serial: str


class ProgressEvent(TypedDict):
    """``next_code_wait`` and ``calling_sts``: an answered request's next step, as a line to
    show; ``token_touch`` (``id`` empty): the vault key waits for a touch on the card."""

    id: str
    profile: str
    message: str


class ApprovalChange(TypedDict):
    """``approval_opened``, ``approval_joined`` and ``approval_resolved``, pushed to the TUI."""

    approval: ApprovalView


EVENTS: Final[Mapping[str, type]] = {
    "subscribed": EmptyReply,
    APPROVAL_PENDING: PendingEvent,
    "touch_needed": PendingEvent,
    "also_waiting": PendingEvent,
    "next_code_wait": ProgressEvent,
    "calling_sts": ProgressEvent,
    "token_touch": ProgressEvent,
    "approval_opened": ApprovalChange,
    "approval_joined": ApprovalChange,
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
