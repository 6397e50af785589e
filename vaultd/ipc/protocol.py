"""The vaultd socket protocol, version 1: frames, strict requests, replies and events.

Pure code: no sockets, no I/O.  The server and the clients call it at their edges.

Wire format
-----------
A frame is a 4-byte big-endian unsigned length ``N`` followed by ``N`` bytes of UTF-8 JSON that
hold exactly one object.  ``N`` is at most 64 KiB (:data:`MAX_FRAME`); a larger length is
refused from the header alone, before anything is allocated (``FRAME_TOO_LARGE``).

Decoding is strict: invalid UTF-8, ``NaN``/``Infinity``, duplicate keys, trailing bytes, a
top-level value that is not an object, unknown fields, wrong types (``true`` is not an
integer) and over-long strings are all ``BAD_REQUEST``, and the message names the field.

Requests carry ``"v": 1`` and ``"op"``.  Each op is declared once below, with :func:`op` on its
request dataclass: its fields and their checks, and its success reply type
(:mod:`vaultd.ipc.views`).  :data:`OP_TABLE` collects the declarations; the request schema
check (:func:`parse_request`), the daemon's dispatcher, the reply check
(:func:`vaultd.ipc.replies.check_reply`) and ``docs/protocol.md`` (:func:`reference`, a test
keeps it current) all derive from it.  Nothing but the declared fields is accepted.

Strings never hold NUL or unpaired surrogates.  Requests decode into the frozen dataclasses
below (subclasses of :class:`Request`).

Server frames:

- success: ``{"v":1,"ok":true, ...op-specific keys}``;
- error: ``{"v":1,"ok":false,"error":{"code":CODE,"message":MSG, ...typed extras}}``, built
  from a :class:`~vaultd.errors.VaultError` only by :func:`error_reply`; the extras are the
  error's typed attributes (``retry_after``, ``path``, ``attribute``, ``check``, ...);
- event: ``{"v":1,"event":NAME, ...}``, pushed before the final reply or on an ``events``
  subscription.  ``approval_pending`` (:func:`approval_pending_fields`) carries ``id``,
  ``profile``, ``requester`` (``pid``, ``uid``, ``executable``, ``cwd``, ``parent_pid``,
  ``parent_command``), ``mfa_serial`` (the MFA device asked) and ``expires`` (RFC 3339 UTC);
  ``also_waiting`` has the same fields, ``requester`` being a process that joined the request
  (events are declared in :data:`vaultd.ipc.replies.EVENTS`);
- the ``credentials`` fast path: exactly ``{"v":1,"ok":true,"output":`` + the ready-made
  credential_process JSON + ``}`` (:func:`credentials_reply`), so a client may copy the output
  without parsing JSON.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import ClassVar, Final, TypeVar, get_args, get_type_hints

from vaultd import errors
from vaultd.core.model import Requester
from vaultd.errors import BadRequest, FrameTooLarge, VaultError
from vaultd.ipc import views

PROTOCOL_VERSION: Final = 1
SUPPORTED_VERSIONS: Final = (1,)
HEADER_SIZE: Final = 4
MAX_FRAME: Final = 64 * 1024
CREDENTIALS_PREFIX: Final = b'{"v":1,"ok":true,"output":'
APPROVAL_PENDING: Final = "approval_pending"

PROFILE_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CODE_NAME_RE: Final = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_EXTRA_TYPES: Final[Mapping[str, tuple[type, ...]]] = {
    "retry_after": (int, float),
    "path": (str,),
    "attribute": (str,),
    "check": (str,),
    "count_low": (bool,),
    "final_try": (bool,),
    "challenge": (str,),
    "attempts_remaining": (int,),
}

# --- requests: one declaration per op ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Field:
    kind: type
    required: bool = True
    max_len: int = 0
    pattern: re.Pattern[str] | None = None
    choices: frozenset[str] = frozenset()

    def describe(self) -> str:
        """The field's rule in words, for ``docs/protocol.md``."""
        kind = {bool: "bool", int: "int"}.get(self.kind, "str")
        rules = [kind if self.required else f"optional {kind}"]
        if self.pattern is not None:
            rules.append(f"``^{self.pattern.pattern}$``")
        if self.max_len:
            unit = "" if self.kind is int else " characters"
            rules.append(f"1 to {self.max_len}{unit}")
        return ", ".join(rules)


_PROFILE = _Field(str, pattern=PROFILE_RE)
_ID = _Field(str, pattern=ID_RE)
_FLAG = _Field(bool, required=False)
_DISPLAY = _Field(str, required=False, pattern=re.compile(r"[A-Za-z0-9:._/-]{1,255}"))
_RELEASE: Final = {
    "profile": _PROFILE,
    "interactive": _FLAG,
    "display": _DISPLAY,
    "wayland_display": _DISPLAY,
}


class Request:
    """A decoded request: each op's request dataclass subclasses it, declared by :func:`op`."""

    __slots__ = ()
    op: ClassVar[str]


@dataclass(frozen=True, slots=True)
class OpSpec:
    """One op's declaration: its request type, the checks of its fields, its reply type."""

    name: str
    request: type[Request]
    fields: Mapping[str, _Field]
    reply: type


OP_TABLE: Final[dict[str, OpSpec]] = {}
"""op name -> its declaration, in declaration order."""

_R = TypeVar("_R", bound=Request)


def op(name: str, reply: type, /, **fields: _Field) -> Callable[[type[_R]], type[_R]]:
    """Declare ``name``: the decorated dataclass is its request, ``fields`` check its fields."""

    def declare(cls: type[_R]) -> type[_R]:
        declared = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        if name in OP_TABLE or declared != fields.keys():
            raise RuntimeError(f"op {name!r}: declared twice or its fields do not match its checks")
        cls.op = name
        OP_TABLE[name] = OpSpec(name, cls, MappingProxyType(fields), reply)
        return cls

    return declare


@op("credentials", views.CredentialsReply, **_RELEASE)
@dataclass(frozen=True, slots=True)
class CredentialsRequest(Request):
    """Ask for session credentials for ``profile``; judged as ``vaultd:GetCredentials``.
    ``interactive``: the client can prompt on its terminal; ``display`` and
    ``wayland_display``: the client's ``DISPLAY`` (``aqua`` on macOS) and ``WAYLAND_DISPLAY``,
    sent by a client with no terminal, where a dialog may ask (``approval.prompt``)."""

    profile: str
    interactive: bool = False
    display: str | None = None
    wayland_display: str | None = None


@op("exec", views.CredentialsReply, **_RELEASE, duration=_Field(int, required=False))
@dataclass(frozen=True, slots=True)
class ExecRequest(Request):
    """Ask for session credentials for ``profile`` to run a command with (`vaultd exec`); judged
    as ``vaultd:Exec`` (the server derives the action from the op, never from a client field:
    ``docs/threat-model.md`` T33).  ``duration`` asks for a session of that many seconds."""

    profile: str
    interactive: bool = False
    display: str | None = None
    wayland_display: str | None = None
    duration: int | None = None


@op("approvals", views.ApprovalsReply, clear_cooldown=_Field(str, False, pattern=PROFILE_RE))
@dataclass(frozen=True, slots=True)
class ApprovalsRequest(Request):
    """List pending approvals; ``clear_cooldown`` first ends that profile's deny cooldown."""

    clear_cooldown: str | None = None


@op("approve", views.EmptyReply, id=_ID, code=_Field(str, required=False, max_len=16))
@dataclass(frozen=True, slots=True)
class ApproveRequest(Request):
    """Approve a pending approval, optionally with an MFA code."""

    id: str
    code: str | None = field(default=None, repr=False)


@op("deny", views.EmptyReply, id=_ID)
@dataclass(frozen=True, slots=True)
class DenyRequest(Request):
    """Deny a pending approval."""

    id: str


@op("status", views.StatusReply)
@dataclass(frozen=True, slots=True)
class StatusRequest(Request):
    """Report the daemon's state."""


@op("lock", views.EmptyReply, seal=_FLAG, profile=_Field(str, False, pattern=PROFILE_RE))
@dataclass(frozen=True, slots=True)
class LockRequest(Request):
    """Drop cached sessions and grants; ``seal`` also closes the token session; ``profile``
    drops only that profile's session and pending approvals (with ``seal`` everything is
    dropped and sealed all the same)."""

    seal: bool = False
    profile: str | None = None


@op(
    "unlock",
    views.UnlockReply,
    pin=_Field(str, max_len=256),
    final_try_answer=_Field(str, False, max_len=64),
)
@dataclass(frozen=True, slots=True)
class UnlockRequest(Request):
    """Unseal the vault with the token PIN.

    A token at its final PIN try is logged into only when ``final_try_answer`` repeats the
    words of the daemon's last ``HSM_PIN_FINAL_TRY`` challenge, typed by the person
    (:mod:`vaultd.core.final_try`, docs/threat-model.md T9).
    """

    pin: str = field(repr=False)
    final_try_answer: str | None = None


@op("events", views.EmptyReply)
@dataclass(frozen=True, slots=True)
class EventsRequest(Request):
    """Subscribe to pushed events (the TUI); the server keeps pushing event frames."""


@op("rotate", views.RotateReply, name=_PROFILE)
@dataclass(frozen=True, slots=True)
class RotateRequest(Request):
    """Rotate the stored key pair ``name`` (needs an MFA session; runs inside the daemon)."""

    name: str


@op("report", views.ReportReply)
@dataclass(frozen=True, slots=True)
class ReportRequest(Request):
    """The credential report (no secrets)."""


@op("records", views.RecordsReply)
@dataclass(frozen=True, slots=True)
class RecordsRequest(Request):
    """List the stored records' non-secret facts (`vaultd list` with the daemon running)."""


@op(
    "breakglass",
    views.BreakGlassReply,
    profile=_PROFILE,
    reason=_Field(str, max_len=1000),
    code=_Field(str, max_len=16),
    pin=_Field(str, required=False, max_len=256),
    account=_Field(str, required=False, pattern=re.compile(r"[0-9]{12}")),
    task=_Field(str, required=False, pattern=re.compile(r"[A-Za-z0-9:/_-]{1,128}")),
)
@dataclass(frozen=True, slots=True)
class BreakGlassRequest(Request):
    """Open a break-glass grant: a reason, the root MFA code, the authenticator PIN for UV;
    for an AssumeRoot profile, optionally another member account or task."""

    profile: str
    reason: str
    code: str = field(repr=False)
    pin: str | None = field(default=None, repr=False)
    account: str | None = None
    task: str | None = None


@op("grant_end", views.EmptyReply, id=_ID)
@dataclass(frozen=True, slots=True)
class GrantEndRequest(Request):
    """End a break-glass grant now."""

    id: str


@op("audit_tail", views.AuditTailReply, n=_Field(int, required=False, max_len=1000))
@dataclass(frozen=True, slots=True)
class AuditTailRequest(Request):
    """The newest ``n`` audit records (no secrets are ever in them)."""

    n: int = 200


@op("federation", views.CredentialsReply, profile=_PROFILE)
@dataclass(frozen=True, slots=True)
class FederationRequest(Request):
    """A GetFederationToken session for console sign-in of a profile without a role."""

    profile: str


OPS: Final = frozenset(OP_TABLE)


def reference() -> str:
    """``docs/protocol.md``: every op's request fields and reply, from :data:`OP_TABLE`."""
    lines = [
        "# Socket protocol ops (version 1)",
        "",
        "Generated from `vaultd.ipc.protocol.OP_TABLE`; the wire format is described in the",
        "module docstring of `vaultd/ipc/protocol.py`. Regenerate with `python -c 'import",
        'vaultd.ipc.protocol as p; print(p.reference(), end="")\' > docs/protocol.md`.',
    ]
    for spec in OP_TABLE.values():
        doc = " ".join((spec.request.__doc__ or "").split())
        lines += ["", f"## `{spec.name}`", "", doc, "", "Request fields:"]
        lines += [f"- `{n}`: {f.describe()}" for n, f in spec.fields.items()] or ["- none"]
        lines += ["", f"Reply (`{spec.reply.__name__}`):"]
        hints = get_type_hints(spec.reply)
        lines += [f"- `{n}`: `{_type_name(h)}`" for n, h in hints.items()] or ["- no fields"]
    return "\n".join(lines) + "\n"


def _type_name(hint: object) -> str:
    if isinstance(hint, type) and not get_args(hint):
        return hint.__name__
    return repr(hint).replace("typing.", "").replace(f"{views.__name__}.", "")


# --- frames and strict JSON ----------------------------------------------------------------


def frame_length(header: bytes) -> int:
    """Return the body length announced by a 4-byte header; refuse it above the cap."""
    if len(header) != HEADER_SIZE:
        raise BadRequest("truncated frame header: a frame starts with a 4-byte length")
    length = int.from_bytes(header, "big")
    if length > MAX_FRAME:
        raise FrameTooLarge(
            f"frame of {length} bytes refused: the limit is {MAX_FRAME} bytes per frame"
        )
    return length


def encode_frame(body: bytes) -> bytes:
    """Prefix ``body`` with its length; a body above the cap is refused."""
    if len(body) > MAX_FRAME:
        raise FrameTooLarge(f"frame of {len(body)} bytes refused: the limit is {MAX_FRAME} bytes")
    return len(body).to_bytes(HEADER_SIZE, "big") + body


def decode_frame(data: bytes) -> Request:
    """Decode one complete request frame (header and body) held exactly in ``data``."""
    length = frame_length(data[:HEADER_SIZE])
    if len(data) - HEADER_SIZE < length:
        raise BadRequest(f"truncated frame: {length} bytes announced, fewer received")
    if len(data) - HEADER_SIZE > length:
        raise BadRequest("trailing bytes after the frame")
    return decode_request(data[HEADER_SIZE:])


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise BadRequest(f"duplicate key {_quote(key)} in the JSON object")
        out[key] = value
    return out


def _no_constants(name: str) -> object:
    raise BadRequest(f"{name} is not allowed in a frame: JSON numbers must be finite")


def _strict_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadRequest("a number in the frame is out of range: JSON numbers must be finite")
    return value


_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=_no_duplicates, parse_constant=_no_constants, parse_float=_strict_float
)
"""One strict decoder for every frame (``json.loads`` with hooks builds one per call)."""


def decode_body(body: bytes) -> dict[str, object]:
    """Decode one frame body into a JSON object, strictly."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the frame is not valid UTF-8") from None
    try:
        obj: object = _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "value out of range"
        raise BadRequest(f"the frame is not valid JSON: {detail}") from None
    if not isinstance(obj, dict):
        raise BadRequest("the frame must hold one JSON object")
    return obj


def _quote(name: str) -> str:
    """Quote a field name for a message, without echoing long or odd input."""
    if PROFILE_RE.fullmatch(name):
        return f"'{name}'"
    return "(an invalid field name)"


def _check_version(obj: Mapping[str, object]) -> None:
    version = obj.get("v")
    if type(version) is not int:
        raise BadRequest("field 'v' is required and must be an integer protocol version")
    if version not in SUPPORTED_VERSIONS:
        supported = ", ".join(str(v) for v in SUPPORTED_VERSIONS)
        raise BadRequest(
            f"field 'v': unsupported protocol version; this daemon supports version {supported}"
        )


def _check_field(name: str, spec: _Field, value: object) -> None:
    if type(value) is not spec.kind:
        kind = {bool: "a boolean", int: "an integer"}.get(spec.kind, "a string")
        raise BadRequest(f"field '{name}' must be {kind}")
    if isinstance(value, int) and not isinstance(value, bool):
        if spec.max_len and not 1 <= value <= spec.max_len:
            raise BadRequest(f"field '{name}' must be 1 to {spec.max_len}")
        return
    if not isinstance(value, str):
        return
    if spec.pattern is not None and not spec.pattern.fullmatch(value):
        raise BadRequest(f"field '{name}' must match ^{spec.pattern.pattern}$")
    if spec.choices and value not in spec.choices:
        allowed = ", ".join(sorted(spec.choices))
        raise BadRequest(f"field '{name}' must be one of: {allowed}")
    if spec.max_len and not 1 <= len(value) <= spec.max_len:
        raise BadRequest(f"field '{name}' must be 1 to {spec.max_len} characters long")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"field '{name}' holds an unpaired surrogate") from None
    if "\x00" in value:
        raise BadRequest(f"field '{name}' must not contain NUL")


def parse_request(obj: Mapping[str, object]) -> Request:
    """Validate a decoded request object against its op's schema."""
    _check_version(obj)
    op = obj.get("op")
    if type(op) is not str:
        raise BadRequest("field 'op' is required and must be a string")
    declared = OP_TABLE.get(op)
    if declared is None:
        raise BadRequest(f"field 'op': unknown op; known ops: {', '.join(sorted(OPS))}")
    fields = declared.fields
    kwargs: dict[str, object] = {}
    for name, value in obj.items():
        if name in ("v", "op"):
            continue
        spec = fields.get(name)
        if spec is None:
            raise BadRequest(f"field {_quote(name)} is not allowed in a {op!r} request")
        _check_field(name, spec, value)
        kwargs[name] = value
    for name, spec in fields.items():
        if spec.required and name not in kwargs:
            raise BadRequest(f"field '{name}' is required in a {op!r} request")
    return declared.request(**kwargs)


def decode_request(body: bytes) -> Request:
    """Decode and validate one request frame body."""
    return parse_request(decode_body(body))


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def _dumps(obj: Mapping[str, object]) -> bytes:
    return _ENCODER.encode(obj).encode("ascii")


def encode_request(op: str, **fields: object) -> bytes:
    """Build a request frame for ``op``, validated as the server would."""
    obj: dict[str, object] = {"v": PROTOCOL_VERSION, "op": op, **fields}
    parse_request(obj)
    return encode_frame(_dumps(obj))


# --- replies and events --------------------------------------------------------------------


def success_reply(fields: Mapping[str, object]) -> bytes:
    """The body of a success reply carrying ``fields``."""
    if "v" in fields or "ok" in fields:
        raise ValueError("reply fields must not set 'v' or 'ok'")
    return _dumps({"v": PROTOCOL_VERSION, "ok": True, **fields})


def credentials_reply(output: bytes) -> bytes:
    """The body of the ``credentials`` fast-path reply around ready-made credential JSON.

    ``output`` must be a session ``credential_process`` document (a ``SessionToken`` and an
    ``Expiration``, see :func:`vaultd.ipc.replies.check_credential_output`), else
    ``ReplySchemaViolation``: a long-term key pair never travels in this reply (docs/threat-model.md
    T28).
    """
    # Lazy: replies imports this module (import cycle).
    from vaultd.ipc.replies import check_credential_output

    check_credential_output(output)
    return CREDENTIALS_PREFIX + output + b"}"


def error_extras(exc: VaultError) -> dict[str, object]:
    """The typed attributes of ``exc`` that travel with an error reply."""
    extras: dict[str, object] = {}
    for name, kinds in _EXTRA_TYPES.items():
        value = getattr(exc, name, None)
        if isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool)):
            extras[name] = value
    return extras


def error_reply(exc: VaultError) -> bytes:
    """The body of an error reply: the only place a ``VaultError`` becomes wire bytes."""
    error: dict[str, object] = {"code": exc.code, "message": exc.message, **error_extras(exc)}
    return _dumps({"v": PROTOCOL_VERSION, "ok": False, "error": error})


def event_frame(name: str, fields: Mapping[str, object] | None = None) -> bytes:
    """The body of a pushed event ``name``."""
    extra = dict(fields or {})
    if {"v", "ok", "event"} & extra.keys():
        raise ValueError("event fields must not set 'v', 'ok' or 'event'")
    return _dumps({"v": PROTOCOL_VERSION, "event": name, **extra})


def approval_pending_fields(
    approval_id: str, profile: str, requester: Requester, expires: datetime, mfa_serial: str
) -> dict[str, object]:
    """The fields of the ``approval_pending`` event sent to a waiting ``credentials`` client."""
    return {
        "id": approval_id,
        "profile": profile,
        "mfa_serial": mfa_serial,
        "requester": asdict(requester),
        "expires": expires.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


# --- the client side: replies back into values and errors ----------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """A pushed event frame."""

    name: str
    fields: Mapping[str, object]


def _walk(cls: type[VaultError]) -> list[type[VaultError]]:
    out: list[type[VaultError]] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_walk(sub))
    return out


def error_class(code: str) -> type[VaultError] | None:
    """The :mod:`vaultd.errors` class whose ``code`` is ``code`` (the most general one)."""
    candidates: list[type[VaultError]] = [VaultError, *_walk(VaultError)]
    for cls in candidates:
        if cls.code == code:
            return cls
    return None


_REMOTE: dict[str, type[VaultError]] = {}


def _plain(code: str, base: type[VaultError]) -> type[VaultError]:
    """A message-only subclass of ``base`` carrying ``code`` (for codes we cannot rebuild)."""
    while base is not VaultError and "__init__" in vars(base):
        base = base.__mro__[1]
    cls = _REMOTE.get(code)
    if cls is None:
        cls = type(f"Remote{base.__name__}", (base,), {"code": code, "__module__": __name__})
        _REMOTE[code] = cls
    return cls


def error_from_reply(error: object) -> VaultError:
    """Rebuild the ``VaultError`` an error reply's ``error`` object describes."""
    if not isinstance(error, Mapping):
        return errors.ProtocolError("the daemon sent a malformed error reply")
    code, message = error.get("code"), error.get("message")
    if not isinstance(code, str) or not _CODE_NAME_RE.fullmatch(code):
        return errors.ProtocolError("the daemon sent an error reply without a valid code")
    text = message if isinstance(message, str) else code
    extras = {
        k: v
        for k, v in error.items()
        if k in _EXTRA_TYPES
        and isinstance(v, _EXTRA_TYPES[k])
        and (bool in _EXTRA_TYPES[k] or not isinstance(v, bool))
    }
    cls = error_class(code) or _plain(code, VaultError)
    try:
        return cls(text, **extras)
    except TypeError:
        pass
    try:
        return cls(text)
    except TypeError:
        return _plain(code, cls)(text)


def decode_reply(body: bytes) -> dict[str, object] | Event:
    """Decode a server frame: a success's fields, or an event; an error reply is raised."""
    obj = decode_body(body)
    if obj.get("v") != PROTOCOL_VERSION or type(obj.get("v")) is not int:
        raise errors.ProtocolError("the daemon answered with an unsupported protocol version")
    name = obj.get("event")
    if isinstance(name, str):
        return Event(
            name, MappingProxyType({k: v for k, v in obj.items() if k not in ("v", "event")})
        )
    ok = obj.get("ok")
    if ok is True:
        return {k: v for k, v in obj.items() if k not in ("v", "ok")}
    if ok is False:
        raise error_from_reply(obj.get("error"))
    raise errors.ProtocolError("the daemon sent a frame that is neither a reply nor an event")
