"""FakeDaemonClient: an in-memory daemon behind the ``AsyncDaemonClient`` interface.

A fake because the TUI tests need a daemon whose time, approvals and outages the test controls.
To behave like the real thing it reuses the real pieces: requests are validated by
``vaultd.ipc.protocol.parse_request``, approvals live in the core ``ApprovalBook`` (same ids,
states, code checks and errors), and every reply, error and event goes through the real wire
codec (``success_reply``/``error_reply``/``event_frame`` then ``decode_reply``), so the TUI sees
the same shapes and the same ``VaultError`` classes as from a real daemon.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from vaultd.core.approvals import Approval, ApprovalBook, ApprovalEvent
from vaultd.core.model import ApprovalMethod, Requester
from vaultd.errors import BadRequest, DaemonNotRunning, VaultError
from vaultd.ipc.client import NOT_RUNNING_MESSAGE
from vaultd.ipc.protocol import (
    PROTOCOL_VERSION,
    Event,
    decode_reply,
    error_reply,
    event_frame,
    parse_request,
    success_reply,
)
from vaultd.testing.clock import FakeClock

SOCKET = Path("/run/user/1000/vaultd/vaultd.sock")
REQUESTER = Requester(
    pid=4242,
    uid=1000,
    executable="/usr/bin/python3.11",
    cwd="/home/alice/infra",
    parent_pid=4200,
    parent_command="aws s3 ls",
)


@dataclass
class FakeProfile:
    """A configured profile and its cached session's expiry (None: no session)."""

    name: str
    kind: str = "session"
    approval: str = "code"
    expires_at: datetime | None = None


def _time(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeDaemonClient:
    """Answers ``request``/``events`` like a daemon; records every request in ``calls``."""

    def __init__(
        self,
        clock: FakeClock,
        profiles: list[FakeProfile] | None = None,
        *,
        approval_timeout: float = 50.0,
    ) -> None:
        self.clock = clock
        self.profiles = profiles if profiles is not None else [FakeProfile("dev")]
        self.book = ApprovalBook(clock, timeout=approval_timeout)
        self.book.subscribe(self._on_approval_event)
        self.calls: list[tuple[str, dict[str, object]]] = []
        self.sealed = False
        self.running = True
        self._subscribers: list[asyncio.Queue[bytes | None]] = []

    # --- what a test does to the daemon ---------------------------------------------------

    def open_approval(
        self,
        profile: str = "dev",
        methods: ApprovalMethod = ApprovalMethod.CODE,
        requester: Requester = REQUESTER,
    ) -> Approval:
        """A client asks for credentials: open a pending approval (pushed to subscribers)."""
        return self.book.open(profile, "credential_process", requester, methods)

    def stop(self) -> None:
        """The daemon goes away: subscriptions end, new connections are refused."""
        self.running = False
        for queue in self._subscribers:
            queue.put_nowait(None)

    def start(self) -> None:
        """The daemon is back."""
        self.running = True

    def requests(self, op: str) -> list[dict[str, object]]:
        """The fields of every recorded ``op`` request."""
        return [fields for name, fields in self.calls if name == op]

    # --- the AsyncDaemonClient interface --------------------------------------------------

    async def request(
        self, op: str, /, *, on_event: Callable[[Event], None] | None = None, **fields: object
    ) -> dict[str, object]:
        """One request, answered through the real codec (no op here pushes events first)."""
        await asyncio.sleep(0)
        if not self.running:
            raise DaemonNotRunning(NOT_RUNNING_MESSAGE)
        self.calls.append((op, dict(fields)))
        try:
            body = success_reply(self._handle(op, fields))
        except VaultError as exc:
            body = error_reply(exc)
        reply = decode_reply(body)
        assert isinstance(reply, dict)
        return reply

    async def events(self) -> AsyncIterator[Event]:
        """The ``events`` subscription: ``subscribed``, then approval events until stopped."""
        await asyncio.sleep(0)
        if not self.running:
            raise DaemonNotRunning(NOT_RUNNING_MESSAGE)
        parse_request({"v": PROTOCOL_VERSION, "op": "events"})
        self.calls.append(("events", {}))
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._subscribers.append(queue)
        try:
            queue.put_nowait(event_frame("subscribed"))
            while (body := await queue.get()) is not None:
                event = decode_reply(body)
                assert isinstance(event, Event)
                yield event
        finally:
            self._subscribers.remove(queue)

    # --- the daemon side ------------------------------------------------------------------

    def _on_approval_event(self, event: ApprovalEvent) -> None:
        body = event_frame(f"approval_{event.kind.value}", {"approval": event.approval.as_dict()})
        for queue in self._subscribers:
            queue.put_nowait(body)

    def _handle(self, op: str, fields: Mapping[str, object]) -> Mapping[str, object]:
        request = parse_request({"v": PROTOCOL_VERSION, "op": op, **fields})
        self.book.expire_due()
        if op == "status":
            return self._status()
        if op == "approvals":
            return {"approvals": [a.as_dict() for a in self.book.pending()]}
        if op == "approve":
            self.book.approve(str(fields["id"]), code=getattr(request, "code", None))
            return {}
        if op == "deny":
            self.book.deny(str(fields["id"]))
            return {}
        if op == "lock":
            self.book.cancel_all()
            self.profiles = [FakeProfile(p.name, p.kind, p.approval) for p in self.profiles]
            self.sealed = self.sealed or bool(fields.get("seal", False))
            return {}
        if op == "unlock":
            self.sealed = False
            return {}
        raise BadRequest(f"op {op!r} is not handled by this daemon")

    def _status(self) -> Mapping[str, object]:
        now = self.clock.now()
        profiles = [
            {
                "name": p.name,
                "kind": p.kind,
                "approval": p.approval,
                "expires_at": _time(p.expires_at) if p.expires_at else None,
                "seconds_left": int((p.expires_at - now).total_seconds()) if p.expires_at else None,
            }
            for p in self.profiles
        ]
        return {
            "sealed": self.sealed,
            "now": _time(now),
            "profiles": profiles,
            "approvals": [a.as_dict() for a in self.book.pending()],
            "token_label": "vaultd",
            "socket": str(SOCKET),
            "pid": 31337,
        }
