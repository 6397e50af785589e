"""Plain data for the TUI: the daemon's replies and events as typed values (no Textual here).

The daemon is trusted to speak the protocol, but a reply of the wrong shape must not crash the
TUI: every parser raises :class:`~vaultd.errors.ProtocolError` naming the field instead.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from vaultd.core.breakglass import MAX_REASON, MIN_REASON
from vaultd.errors import ProtocolError
from vaultd.ipc.protocol import Event

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_AUDIT_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
BREAK_GLASS_ACTION = "break_glass"


class DaemonPort(Protocol):
    """What the TUI needs from a daemon client (``AsyncDaemonClient`` or a test fake)."""

    async def request(
        self, op: str, /, *, on_event: Callable[[Event], None] | None = None, **fields: object
    ) -> dict[str, object]:
        """Send one request; return the success reply's fields or raise its ``VaultError``."""
        ...

    def events(self) -> AsyncIterator[Event]:
        """Subscribe to pushed events; the iterator ends when the daemon ends the stream."""
        ...


@dataclass(frozen=True, slots=True)
class Secret:
    """A PIN or code on its way to the daemon; hidden from repr (crash reports show locals)."""

    value: str = field(repr=False)


def hms(seconds: float) -> str:
    """``seconds`` as ``h:mm:ss`` (never negative)."""
    whole = max(0, int(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def parse_time(value: str) -> datetime:
    """An RFC 3339 UTC timestamp as the daemon writes it (``2025-05-26T12:34:56Z``)."""
    return datetime.strptime(value, _TIME_FORMAT).replace(tzinfo=UTC)


def _field(obj: Mapping[str, object], name: str, kind: type) -> object:
    value = obj.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProtocolError(f"the daemon sent a malformed reply: field '{name}' is missing or odd")
    return value


def _str(obj: Mapping[str, object], name: str) -> str:
    return str(_field(obj, name, str))


def _int(obj: Mapping[str, object], name: str) -> int:
    value = _field(obj, name, int)
    assert isinstance(value, int)  # noqa: S101 - checked by _field
    return value


def _map(obj: Mapping[str, object], name: str) -> Mapping[str, object]:
    value = _field(obj, name, Mapping)
    assert isinstance(value, Mapping)  # noqa: S101 - checked by _field
    return value


def _list(obj: Mapping[str, object], name: str) -> list[Mapping[str, object]]:
    value = _field(obj, name, list)
    assert isinstance(value, list)  # noqa: S101 - checked by _field
    if not all(isinstance(item, Mapping) for item in value):
        raise ProtocolError(f"the daemon sent a malformed reply: field '{name}' holds a non-object")
    return value


def _time(obj: Mapping[str, object], name: str) -> datetime:
    try:
        return parse_time(_str(obj, name))
    except ValueError:
        raise ProtocolError(
            f"the daemon sent a malformed reply: field '{name}' is not a time"
        ) from None


@dataclass(frozen=True, slots=True)
class JoinedProcess:
    """A process waiting on an approval it did not open (it gets the same session)."""

    pid: int
    executable: str


@dataclass(frozen=True, slots=True)
class PendingApproval:
    """A pending approval and the process behind it (``Approval.as_dict`` on the wire)."""

    id: str
    profile: str
    action: str
    methods: str
    state: str
    created_at: datetime
    expires_at: datetime
    pid: int
    executable: str
    cwd: str
    parent_pid: int
    parent_command: str
    mfa_serial: str
    joined: tuple[JoinedProcess, ...] = ()
    joined_more: int = 0

    @classmethod
    def from_wire(cls, obj: Mapping[str, object]) -> PendingApproval:
        """Parse one approval object."""
        who = _map(obj, "requested_by")
        joined = _list(obj, "joined")
        return cls(
            id=_str(obj, "id"),
            profile=_str(obj, "profile"),
            action=_str(obj, "action"),
            methods=_str(obj, "methods"),
            state=_str(obj, "state"),
            created_at=_time(obj, "created_at"),
            expires_at=_time(obj, "expires_at"),
            pid=_int(who, "pid"),
            executable=_str(who, "executable"),
            cwd=_str(who, "cwd"),
            parent_pid=_int(who, "parent_pid"),
            parent_command=_str(who, "parent_command"),
            mfa_serial=_str(obj, "mfa_serial"),
            joined=tuple(JoinedProcess(_int(j, "pid"), _str(j, "executable")) for j in joined),
            joined_more=_int(obj, "joined_more"),
        )

    @property
    def takes_code(self) -> bool:
        """Whether the user answers with a typed MFA code."""
        return self.methods in ("code", "touch-or-code")

    @property
    def takes_touch(self) -> bool:
        """Whether the daemon waits for a security-key touch."""
        return self.methods in ("touch", "touch-or-code")


@dataclass(frozen=True, slots=True)
class ProfileRow:
    """One profile on the dashboard."""

    name: str
    kind: str
    approval: str
    expires_at: datetime | None
    target_account: str | None = None
    root_task: str | None = None
    root: bool = False  # stored root keys or AssumeRoot: offered for break-glass

    @classmethod
    def from_wire(cls, obj: Mapping[str, object]) -> ProfileRow:
        """Parse one entry of the status reply's ``profiles``."""
        expires = obj.get("expires_at")
        account, task = obj.get("target_account"), obj.get("root_task")
        return cls(
            name=_str(obj, "name"),
            kind=_str(obj, "kind"),
            approval=_str(obj, "approval"),
            expires_at=_time(obj, "expires_at") if expires is not None else None,
            target_account=account if isinstance(account, str) else None,
            root_task=task if isinstance(task, str) else None,
            root=obj.get("root") is True,
        )

    def seconds_left(self, now: datetime) -> float | None:
        """Seconds until the cached session expires, or None without a session."""
        if self.expires_at is None:
            return None
        return (self.expires_at - now).total_seconds()


@dataclass(frozen=True, slots=True)
class GrantInfo:
    """A break-glass grant as ``status`` and ``breakglass`` describe it (no secrets)."""

    id: str
    profile: str
    reason: str
    expires_at: datetime
    read: bool

    @classmethod
    def from_wire(cls, obj: Mapping[str, object]) -> GrantInfo:
        """Parse one grant object."""
        return cls(
            id=_str(obj, "id"),
            profile=_str(obj, "profile"),
            reason=_str(obj, "reason"),
            expires_at=_time(obj, "expires_at"),
            read=_field(obj, "read", bool) is True,
        )


@dataclass(frozen=True, slots=True)
class DaemonStatus:
    """The daemon's answer to ``status``."""

    sealed: bool
    token_label: str
    pid: int
    socket: str
    profiles: tuple[ProfileRow, ...]
    approvals: tuple[PendingApproval, ...]
    grants: tuple[GrantInfo, ...] = ()
    cooldowns: Mapping[str, int] = field(default_factory=dict)
    """Profiles in a deny cooldown, with the seconds left when the status was sent."""
    in_progress: Mapping[str, str] = field(default_factory=dict)
    """Answered approvals on their way to a session: profile -> its last progress event."""

    @classmethod
    def from_wire(cls, obj: Mapping[str, object]) -> DaemonStatus:
        """Parse a ``status`` reply (``grants``, ``cooldowns`` and ``in_progress`` are absent
        from older daemons)."""
        sealed = _field(obj, "sealed", bool)
        grants = _list(obj, "grants") if "grants" in obj else []
        cooldowns = _map(obj, "cooldowns") if "cooldowns" in obj else {}
        progress = _list(obj, "in_progress") if "in_progress" in obj else []
        return cls(
            sealed=sealed is True,
            token_label=_str(obj, "token_label"),
            pid=_int(obj, "pid"),
            socket=_str(obj, "socket"),
            profiles=tuple(ProfileRow.from_wire(p) for p in _list(obj, "profiles")),
            approvals=tuple(PendingApproval.from_wire(a) for a in _list(obj, "approvals")),
            grants=tuple(GrantInfo.from_wire(g) for g in grants),
            cooldowns={name: _int(cooldowns, name) for name in cooldowns},
            in_progress={_str(p, "profile"): _str(p, "state") for p in progress},
        )


def parse_approvals(reply: Mapping[str, object]) -> tuple[PendingApproval, ...]:
    """Parse an ``approvals`` reply."""
    return tuple(PendingApproval.from_wire(a) for a in _list(reply, "approvals"))


def approval_of(event: Event) -> PendingApproval:
    """The approval an ``approval_opened``/``approval_joined``/``approval_resolved`` event
    carries."""
    return PendingApproval.from_wire(_map(event.fields, "approval"))


def grant_of(reply: Mapping[str, object]) -> GrantInfo:
    """The grant a ``breakglass`` reply carries."""
    return GrantInfo.from_wire(_map(reply, "grant"))


def reason_ok(reason: str) -> bool:
    """Whether the daemon will take ``reason`` (whitespace collapsed, 8 to 500 characters)."""
    return MIN_REASON <= len(" ".join(reason.split())) <= MAX_REASON


_EXPORTS = (
    ("AWS_ACCESS_KEY_ID", "AccessKeyId"),
    ("AWS_SECRET_ACCESS_KEY", "SecretAccessKey"),
    ("AWS_SESSION_TOKEN", "SessionToken"),
    ("AWS_CREDENTIAL_EXPIRATION", "Expiration"),
)


def export_lines(reply: Mapping[str, object]) -> str:
    """A ``grant`` reply's credentials as shell ``export`` lines (the caller shows them once)."""
    output = _map(reply, "output")
    return "\n".join(f"export {name}={shlex.quote(_str(output, key))}" for name, key in _EXPORTS)


_AUDIT_SHOWN = frozenset(
    {"seq", "time", "event", "profile", "outcome", "client", "severity", "break_glass"}
)
_AUDIT_HIDDEN = frozenset({"prev", "mac"})


def _client(obj: Mapping[str, object]) -> str:
    client = obj.get("client")
    if not isinstance(client, Mapping):
        return ""
    return f"pid {client.get('pid', '?')} {client.get('executable', '')}".rstrip()


def _detail(obj: Mapping[str, object]) -> str:
    rest = {k: v for k, v in obj.items() if k not in _AUDIT_SHOWN | _AUDIT_HIDDEN}
    return " ".join(
        f"{k}={v if isinstance(v, str) else json.dumps(v, separators=(',', ':'))}"
        for k, v in sorted(rest.items())
    )


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit record from ``audit_tail``, as the audit view shows it."""

    seq: int
    at: datetime
    event: str
    profile: str
    outcome: str
    client: str
    detail: str
    critical: bool

    @classmethod
    def from_wire(cls, obj: Mapping[str, object]) -> AuditRecord:
        """Parse one record; break-glass and ``severity=critical`` records are critical."""
        try:
            at = datetime.strptime(_str(obj, "time"), _AUDIT_TIME_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise ProtocolError(
                "the daemon sent a malformed reply: field 'time' is not a time"
            ) from None
        profile, outcome = obj.get("profile"), obj.get("outcome")
        return cls(
            seq=_int(obj, "seq"),
            at=at,
            event=_str(obj, "event"),
            profile=profile if isinstance(profile, str) else "",
            outcome=outcome if isinstance(outcome, str) else "",
            client=_client(obj),
            detail=_detail(obj),
            critical=obj.get("severity") == "critical" or obj.get("break_glass") is True,
        )

    def matches(self, query: str) -> bool:
        """Whether every word of ``query`` occurs in the profile or the event name."""
        haystack = f"{self.profile} {self.event}".lower()
        return all(word in haystack for word in query.lower().split())


def parse_audit(reply: Mapping[str, object]) -> tuple[AuditRecord, ...]:
    """Parse an ``audit_tail`` reply (newest first, as the daemon sends it)."""
    return tuple(AuditRecord.from_wire(r) for r in _list(reply, "records"))
