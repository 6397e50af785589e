"""FakeDaemonClient: an in-memory daemon behind the ``AsyncDaemonClient`` interface.

A fake because the TUI tests need a daemon whose time, approvals and outages the test controls.
To behave like the real thing it reuses the real pieces: requests are validated by
``vaultd.ipc.protocol.parse_request``, approvals live in the core ``ApprovalBook`` (same ids,
states, code checks and errors), and every reply, error and event goes through the real wire
codec (``success_reply``/``error_reply``/``event_frame`` then ``decode_reply``), so the TUI sees
the same shapes and the same ``VaultError`` classes as from a real daemon.

Break-glass mirrors ``vaultd.core.breakglass``: the same reason and code checks in the same
order, the touch as a pending ``break_glass`` approval in the book (``hold_touch`` keeps it
waiting until :meth:`FakeDaemonClient.touch`), a grant readable exactly once (then
``GRANT_USED``), ``grant_end``, critical audit records, and the grant reply built by the real
``credential_process`` renderer.  ``unlock`` checks the token PIN like the real token does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

from vaultd.aws.credential_process import render
from vaultd.core.approvals import Approval, ApprovalBook, ApprovalEvent, new_approval_id
from vaultd.core.breakglass import DEFAULT_SECONDS, MAX_REASON, MIN_REASON
from vaultd.core.model import CODE_RE, ApprovalMethod, Requester, SessionCredentials
from vaultd.errors import (
    BadRequest,
    BreakGlassOnly,
    CodeMalformed,
    DaemonNotRunning,
    Fido2PinInvalid,
    Fido2PinRequired,
    GrantUsed,
    HsmPinIncorrect,
    MfaRejected,
    Sealed,
    UnknownProfile,
    VaultError,
)
from vaultd.ipc.client import NOT_RUNNING_MESSAGE
from vaultd.ipc.protocol import (
    PROTOCOL_VERSION,
    BreakGlassRequest,
    Event,
    decode_reply,
    error_reply,
    event_frame,
    parse_request,
    success_reply,
)
from vaultd.testing.clock import FakeClock

SOCKET = Path("/run/user/1000/vaultd/vaultd.sock")
MFA_DEVICE = "arn:aws:iam::123456789012:mfa/alice"
"""The MFA device every approval opened here is for (the daemon names the profile's)."""
REQUESTER = Requester(
    pid=4242,
    uid=1000,
    executable="/usr/bin/python3.11",
    cwd="/home/alice/infra",
    parent_pid=4200,
    parent_command="aws s3 ls",
)
TOKEN_PIN = "4711"
ROOT_CODE = "246810"
ROOT_KEY_ID = "ASIAFAKEROOTSESSION1"
ROOT_SECRET = "FakeRootSecretKey0000000000000000000001"
ROOT_TOKEN = "FakeRootSessionToken0001"


@dataclass
class FakeProfile:
    """A configured profile and its cached session's expiry (None: no session)."""

    name: str
    kind: str = "session"
    approval: str = "code"
    expires_at: datetime | None = None
    root: bool = False
    target_account: str | None = None  # an AssumeRoot profile's member account
    root_task: str | None = None  # and its root-task policy ARN


def _time(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakeGrant:
    """A grant's public facts (its credentials went to the requester in the reply)."""

    id: str
    profile: str
    reason: str
    expires_at: datetime
    read: bool = True

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "profile": self.profile,
            "reason": self.reason,
            "expires_at": _time(self.expires_at),
            "read": self.read,
        }


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
        self.fido2_pin: str | None = None
        self.hold_touch = False
        self.grants: dict[str, FakeGrant] = {}
        self.audit_log: list[dict[str, object]] = []
        self.cooldowns: dict[str, int] = {}
        self.in_progress: list[dict[str, str]] = []
        self._touched = asyncio.Event()
        self._subscribers: list[asyncio.Queue[bytes | None]] = []

    # --- what a test does to the daemon ---------------------------------------------------

    def open_approval(
        self,
        profile: str = "dev",
        methods: ApprovalMethod = ApprovalMethod.CODE,
        requester: Requester = REQUESTER,
    ) -> Approval:
        """A client asks for credentials: open a pending approval (pushed to subscribers)."""
        return self.book.open(
            profile, "credential_process", requester, methods, mfa_serial=MFA_DEVICE
        )

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

    def touch(self) -> None:
        """The user touches the security key (releases a held break-glass touch)."""
        self._touched.set()

    def audit(self, event: str, **fields: object) -> None:
        """Append an audit record shaped like the real log's (``seq``, ``time``, ``prev``...)."""
        seq = len(self.audit_log) + 1
        time = self.clock.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        record = {**fields, "seq": seq, "time": time, "event": event}
        self.audit_log.append({**record, "prev": "0" * 64, "mac": "f" * 64})

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
            # Shielded: like a real daemon, the request runs on when the client gives up.
            result = await asyncio.shield(self._handle(op, fields))
            body = result if isinstance(result, bytes) else success_reply(result)
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

    async def _handle(self, op: str, fields: Mapping[str, object]) -> Mapping[str, object] | bytes:
        request = parse_request({"v": PROTOCOL_VERSION, "op": op, **fields})
        self.book.expire_due()
        if isinstance(request, BreakGlassRequest):
            grant, creds = await self._break_glass(request)
            return {"grant": grant.as_dict(), "output": json.loads(render(creds))}
        if op == "grant_end":
            grant = self.grants.pop(str(fields["id"]), None)
            if grant is None:
                raise GrantUsed(f"grant {fields['id']} is not active")
            self._bg_audit("breakglass_ended", grant.profile, grant=grant.id)
            return {}
        if op == "audit_tail":
            return {"records": self.audit_log[::-1][: int(str(fields.get("n", 200)))]}
        if op == "status":
            return self._status()
        if op == "approvals":
            self.cooldowns.pop(str(fields.get("clear_cooldown")), None)
            return {"approvals": [a.as_dict() for a in self.book.pending()]}
        if op == "approve":
            self.book.approve(str(fields["id"]), code=getattr(request, "code", None))
            return {}
        if op == "deny":
            self.book.deny(str(fields["id"]))
            return {}
        if op == "lock":
            self.book.cancel_all()
            self.grants.clear()
            self.profiles = [
                FakeProfile(p.name, p.kind, p.approval, root=p.root) for p in self.profiles
            ]
            self.sealed = self.sealed or bool(fields.get("seal", False))
            self.audit("lock", outcome="sealed" if self.sealed else "locked")
            return {}
        if op == "unlock":
            if fields["pin"] != TOKEN_PIN:
                raise HsmPinIncorrect("the token refused the PIN; check it and try again")
            self.sealed = False
            self.audit("unlock", outcome="unsealed")
            return {"already_unlocked": False}
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
                "target_account": p.target_account,
                "root_task": p.root_task,
                "root": p.root or p.kind == "assume_root",
            }
            for p in self.profiles
        ]
        return {
            "sealed": self.sealed,
            "now": _time(now),
            "profiles": profiles,
            "approvals": [a.as_dict() for a in self.book.pending()],
            "touch_needed": [],
            "cooldowns": dict(self.cooldowns),
            "in_progress": list(self.in_progress),
            "grants": [g.as_dict() for g in self.grants.values() if g.expires_at > now],
            "token_label": "vaultd",
            "socket": str(SOCKET),
            "pid": 31337,
        }

    # --- break-glass, as vaultd.core.breakglass does it -------------------------------------

    def _bg_audit(self, event: str, profile: str, **fields: object) -> None:
        self.audit(event, profile=profile, severity="critical", break_glass=True, **fields)

    async def _break_glass(
        self, request: BreakGlassRequest
    ) -> tuple[FakeGrant, SessionCredentials]:
        reason = " ".join(request.reason.split())
        if not MIN_REASON <= len(reason) <= MAX_REASON:
            raise BadRequest(
                f"field reason: a reason of {MIN_REASON}-{MAX_REASON} characters is required"
            )
        if not CODE_RE.fullmatch(request.code):
            raise CodeMalformed("the root MFA code is exactly 6 ASCII digits")
        profile = next((p for p in self.profiles if p.name == request.profile), None)
        if profile is None:
            raise UnknownProfile(f"no profile {request.profile!r} in the vaultd config")
        if profile.kind not in ("session", "assume_root"):
            raise BreakGlassOnly(
                f"profile {profile.name!r} is not a root profile: break-glass needs a profile "
                "whose credentials are a key pair stored with `vaultd add NAME --root`"
            )
        client = asdict(REQUESTER)
        self._bg_audit("breakglass_requested", profile.name, reason=reason, client=client)
        try:
            if self.sealed:
                raise Sealed("the vault is sealed: run `vaultd unlock`")
            if not profile.root and profile.kind != "assume_root":
                raise BreakGlassOnly(
                    f"{profile.name!r} is not a root key pair: use credential_process for IAM "
                    "users; break-glass is for root credentials"
                )
            await self._touch_with_uv(profile.name, request.pin)
            self._bg_audit("breakglass_factor", profile.name, factor="fido2_uv")
            if request.code != ROOT_CODE:
                raise MfaRejected("AWS rejected the MFA code: wait for the next code and retry")
        except VaultError as exc:
            self._bg_audit("breakglass_refused", profile.name, outcome=exc.code, client=client)
            raise
        expires = self.clock.now() + timedelta(seconds=DEFAULT_SECONDS)
        session = SessionCredentials(ROOT_KEY_ID, ROOT_SECRET, ROOT_TOKEN, expires)
        grant = FakeGrant(new_approval_id(), profile.name, reason, expires)
        self.grants[grant.id] = grant
        self._bg_audit("breakglass_granted", profile.name, grant=grant.id, client=client)
        self._bg_audit("breakglass_read", profile.name, grant=grant.id, client=client)
        return grant, session

    async def _touch_with_uv(self, profile: str, pin: str | None) -> None:
        approval = self.book.open(profile, "break_glass", REQUESTER, ApprovalMethod.TOUCH)
        try:
            if self.fido2_pin is not None and pin is None:
                raise Fido2PinRequired("the security key needs its PIN for user verification")
            if self.fido2_pin is not None and pin != self.fido2_pin:
                raise Fido2PinInvalid("the security key refused the PIN", attempts_remaining=7)
            if self.hold_touch:
                await self._touched.wait()
        except VaultError:
            self.book.deny(approval.id)
            raise
        self.book.approve(approval.id, code=None)
