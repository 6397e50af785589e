"""The handler of every socket op: translate a request into a core use case and back.

:data:`HANDLERS` binds each op declared in :data:`vaultd.ipc.protocol.OP_TABLE` to its handler
(a test checks that every op has exactly one); :meth:`Daemon.handle` dispatches through it.
Handlers hold no rules: those live in the core use cases they call.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from vaultd.aws.credential_process import render
from vaultd.core.model import ClientDisplay, RecordKind, record_rows
from vaultd.core.report import credential_report
from vaultd.core.rotation import rotate
from vaultd.core.status import daemon_status
from vaultd.daemon.events import forward
from vaultd.errors import AuditTampered, Sealed
from vaultd.fido2.gate import load_enrolled
from vaultd.ipc.protocol import (
    ApprovalsRequest,
    ApproveRequest,
    AuditTailRequest,
    BreakGlassRequest,
    CredentialsRequest,
    DenyRequest,
    EventsRequest,
    ExecRequest,
    FederationRequest,
    GrantEndRequest,
    LockRequest,
    RecordsRequest,
    ReportRequest,
    Request,
    RotateRequest,
    StatusRequest,
    UnlockRequest,
    credentials_reply,
)
from vaultd.ipc.server import Connection
from vaultd.store.audit import parse_line, tail

if TYPE_CHECKING:
    from vaultd.daemon.lifecycle import Daemon

Reply = Mapping[str, object] | bytes
Handler = Callable[["Daemon", Any, Connection], Awaitable[Reply]]
R = TypeVar("R", bound=Request)

HANDLERS: dict[str, Handler] = {}
"""op name -> handler."""


def handles(
    request_type: type[R],
) -> Callable[
    [Callable[[Daemon, R, Connection], Awaitable[Reply]]],
    Callable[[Daemon, R, Connection], Awaitable[Reply]],
]:
    """Register the decorated coroutine as the handler of ``request_type``'s op."""
    op = request_type.op

    def register(
        fn: Callable[[Daemon, R, Connection], Awaitable[Reply]],
    ) -> Callable[[Daemon, R, Connection], Awaitable[Reply]]:
        if op in HANDLERS:
            raise RuntimeError(f"op {op!r} has two handlers")
        HANDLERS[op] = fn
        return fn

    return register


async def _release(
    d: Daemon,
    request: CredentialsRequest | ExecRequest,
    conn: Connection,
    action: str,
    duration: int | None = None,
) -> Reply:
    creds = await d.service.credentials(
        request.profile,
        conn.requester,
        action=action,
        on_event=forward(conn),
        alive=lambda: not conn.closed,
        interactive=request.interactive,
        scope=conn.scope,
        display=_display(request),
        duration=duration,
    )
    return credentials_reply(render(creds))


def _display(request: CredentialsRequest | ExecRequest) -> ClientDisplay | None:
    """The graphical session the client reported, if any."""
    if request.display is None and request.wayland_display is None:
        return None
    return ClientDisplay(request.display or "", request.wayland_display or "")


@handles(CredentialsRequest)
async def credentials(d: Daemon, request: CredentialsRequest, conn: Connection) -> Reply:
    # The server, not the client, decides what the policy judges (docs/threat-model.md T33).
    return await _release(d, request, conn, "credential_process")


@handles(ExecRequest)
async def exec_session(d: Daemon, request: ExecRequest, conn: Connection) -> Reply:
    return await _release(d, request, conn, "exec", request.duration)


@handles(ApprovalsRequest)
async def approvals(d: Daemon, request: ApprovalsRequest, conn: Connection) -> Reply:
    service = d.service
    if request.clear_cooldown:
        await service.clear_cooldown(request.clear_cooldown)
    return {
        "approvals": [a.as_dict() for a in service.approvals.pending()],
        "in_progress": service.in_progress(),
        "cooldowns": service.cooldowns(),
    }


def _answerer(d: Daemon, approval_id: str, conn: Connection) -> dict[str, object]:
    """Who answers ``approval_id`` on ``conn``, for its audit record: the peer's facts and a
    channel the server derives (the requesting process itself: its terminal prompt; a process
    with an events subscription: the TUI; anything else: `vaultd approve`), never a field."""
    me = conn.requester
    asked = {a.requester.pid for a in d.service.approvals.pending() if a.id == approval_id}
    channel = (
        "terminal_prompt"
        if me.pid in asked
        else "tui"
        if d.subscribers.watching(me.pid)
        else "vaultd_approve"
    )
    return {"uid": me.uid, "pid": me.pid, "executable": me.executable, "channel": channel}


@handles(ApproveRequest)
async def approve(d: Daemon, request: ApproveRequest, conn: Connection) -> Reply:
    by = _answerer(d, request.id, conn)
    await d.service.approve(request.id, request.code, by=by)
    return {}


@handles(DenyRequest)
async def deny(d: Daemon, request: DenyRequest, conn: Connection) -> Reply:
    await d.service.deny(request.id, by=_answerer(d, request.id, conn))
    return {}


@handles(StatusRequest)
async def status(d: Daemon, request: StatusRequest, conn: Connection) -> Reply:
    roots: frozenset[str] = frozenset()
    with contextlib.suppress(Sealed):  # the record headers say which pairs are root keys
        infos = await d.service.run_io(lambda: d.parts.owner.with_store(lambda s: s.list()))
        roots = frozenset(i.name for i in infos if i.kind is RecordKind.KEY_PAIR and i.root)
    return daemon_status(d.service, d.breakglass, d.facts(), roots)


@handles(LockRequest)
async def lock(d: Daemon, request: LockRequest, conn: Connection) -> Reply:
    profile = None if request.seal else request.profile  # a seal always seals everything
    if profile:
        await d.service.clear(profile)
    else:
        await d.lock(seal=request.seal)
    return {}


@handles(UnlockRequest)
async def unlock(d: Daemon, request: UnlockRequest, conn: Connection) -> Reply:
    done = await d.unlock(
        bytearray(request.pin.encode()), final_try_answer=request.final_try_answer
    )
    return {"already_unlocked": not done}


@handles(EventsRequest)
async def events(d: Daemon, request: EventsRequest, conn: Connection) -> Reply:
    return await d.subscribers.stream(conn)


@handles(BreakGlassRequest)
async def breakglass(d: Daemon, request: BreakGlassRequest, conn: Connection) -> Reply:
    grant, creds = await d.breakglass.open(
        request.profile,
        conn.requester,
        reason=request.reason,
        code=request.code,
        pin=request.pin,
        account=request.account,
        task=request.task,
    )
    # The credentials go on this connection only; no op hands a grant out by id (T31).
    return {"grant": grant.as_dict(), "output": json.loads(render(creds))}


@handles(GrantEndRequest)
async def grant_end(d: Daemon, request: GrantEndRequest, conn: Connection) -> Reply:
    await d.breakglass.end(request.id)
    return {}


@handles(FederationRequest)
async def federation(d: Daemon, request: FederationRequest, conn: Connection) -> Reply:
    # `vaultd login` shows the pending approval to the person who ran it (stderr).
    creds = await d.service.federation_session(
        request.profile,
        conn.requester,
        on_event=forward(conn),
        interactive=True,
        scope=conn.scope,
    )
    return credentials_reply(render(creds))


@handles(AuditTailRequest)
async def audit_tail(d: Daemon, request: AuditTailRequest, conn: Connection) -> Reply:
    def newest_first() -> list[dict[str, object]]:
        records = []
        for line in tail(d.settings.audit_path, request.n):
            with contextlib.suppress(AuditTampered):
                records.append(parse_line(line.rstrip(b"\n")))
        return records[::-1]

    return {"records": await d.service.run_io(newest_first)}


@handles(RotateRequest)
async def rotate_key(d: Daemon, request: RotateRequest, conn: Connection) -> Reply:
    # `vaultd rotate` shows the pending approval to the person who ran it (stderr).
    return await rotate(
        d.service,
        request.name,
        conn.requester,
        on_event=forward(conn),
        keys=d.parts.owner,
        iam=d.parts.iam,
        scope=conn.scope,
    )


@handles(RecordsRequest)
async def records(d: Daemon, request: RecordsRequest, conn: Connection) -> Reply:
    infos = await d.service.run_io(lambda: d.parts.owner.with_store(lambda s: s.list()))
    return {"records": record_rows(infos)}


@handles(ReportRequest)
async def report(d: Daemon, request: ReportRequest, conn: Connection) -> Reply:
    def build() -> Mapping[str, object]:
        records, seeds, fido2 = d.parts.owner.with_store(
            lambda store: (
                store.list(),
                set(store.names(RecordKind.TOTP_SEED)),
                load_enrolled(store),
            )
        )
        return credential_report(
            records,
            seeds=seeds,
            fido2=fido2,
            profiles=d.service.profiles,
            facts=d.parts.audit_facts,
            now=d.parts.clock.now(),
            rotation_days=d.settings.report.rotation_days,
        )

    return await d.service.run_io(build)
