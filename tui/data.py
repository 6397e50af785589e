"""Plain data for the TUI: the daemon's replies and events as typed values (no Textual here).

The daemon is trusted to speak the protocol, but a reply of the wrong shape must not crash the
TUI: every parser raises :class:`~vaultd.errors.ProtocolError` naming the field instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from vaultd.errors import ProtocolError
from vaultd.ipc.protocol import Event

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


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

    @classmethod
    def from_wire(cls, obj: Mapping[str, object]) -> PendingApproval:
        """Parse one approval object."""
        who = _map(obj, "requested_by")
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

    @classmethod
    def from_wire(cls, obj: Mapping[str, object]) -> ProfileRow:
        """Parse one entry of the status reply's ``profiles``."""
        expires = obj.get("expires_at")
        return cls(
            name=_str(obj, "name"),
            kind=_str(obj, "kind"),
            approval=_str(obj, "approval"),
            expires_at=_time(obj, "expires_at") if expires is not None else None,
        )

    def seconds_left(self, now: datetime) -> float | None:
        """Seconds until the cached session expires, or None without a session."""
        if self.expires_at is None:
            return None
        return (self.expires_at - now).total_seconds()


@dataclass(frozen=True, slots=True)
class DaemonStatus:
    """The daemon's answer to ``status``."""

    sealed: bool
    token_label: str
    pid: int
    socket: str
    profiles: tuple[ProfileRow, ...]
    approvals: tuple[PendingApproval, ...]

    @classmethod
    def from_wire(cls, obj: Mapping[str, object]) -> DaemonStatus:
        """Parse a ``status`` reply."""
        sealed = _field(obj, "sealed", bool)
        return cls(
            sealed=sealed is True,
            token_label=_str(obj, "token_label"),
            pid=_int(obj, "pid"),
            socket=_str(obj, "socket"),
            profiles=tuple(ProfileRow.from_wire(p) for p in _list(obj, "profiles")),
            approvals=tuple(PendingApproval.from_wire(a) for a in _list(obj, "approvals")),
        )


def parse_approvals(reply: Mapping[str, object]) -> tuple[PendingApproval, ...]:
    """Parse an ``approvals`` reply."""
    return tuple(PendingApproval.from_wire(a) for a in _list(reply, "approvals"))


def approval_of(event: Event) -> PendingApproval:
    """The approval an ``approval_opened``/``approval_resolved`` event carries."""
    return PendingApproval.from_wire(_map(event.fields, "approval"))


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One line of the events view."""

    at: datetime
    event: str
    profile: str = ""
    detail: str = ""

    def matches(self, query: str) -> bool:
        """Whether every word of ``query`` occurs in the profile or the event name."""
        haystack = f"{self.profile} {self.event}".lower()
        return all(word in haystack for word in query.lower().split())


def log_entry(event: Event, now: datetime) -> LogEntry:
    """The events-view line for a pushed daemon event."""
    if event.name.startswith("approval_") and "approval" in event.fields:
        approval = approval_of(event)
        detail = f"{approval.id} {approval.state} · pid {approval.pid} {approval.parent_command}"
        return LogEntry(now, event.name, approval.profile, detail.rstrip())
    return LogEntry(now, event.name)
