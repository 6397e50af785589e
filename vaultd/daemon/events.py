"""Approval events to clients: the waiting requester, and the TUIs subscribed with ``events``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from vaultd.core.approvals import Approval
from vaultd.core.service import EventSink, TokenWait, VaultService
from vaultd.ipc.protocol import approval_pending_fields
from vaultd.ipc.server import Connection

log = logging.getLogger("vaultd.daemon")


def forward(conn: Connection) -> EventSink:
    """Push the service's approval events (`approval_pending`, `touch_needed`, `also_waiting`)
    and progress events (`next_code_wait`, `calling_sts`, `token_touch`: those with a message)
    to a client."""

    async def send(kind: str, approval: Approval | TokenWait, message: str = "") -> None:
        if message or isinstance(approval, TokenWait):
            progress = {"id": approval.id, "profile": approval.profile, "message": message}
            await conn.send_event(kind, progress)
            return
        fields = approval_pending_fields(
            approval.id,
            approval.profile,
            approval.requester,
            approval.expires_at,
            approval.mfa_serial,
        )
        fields["methods"] = approval.methods.value
        await conn.send_event(kind, fields)

    return send


class Subscribers:
    """The attached approvers (TUIs): each gets every approval change until it goes away."""

    def __init__(self, service: VaultService) -> None:
        self._service = service
        self._conns: set[Connection] = set()

    def __len__(self) -> int:
        return len(self._conns)

    def watching(self, pid: int) -> bool:
        """Whether process ``pid`` holds a subscription (it is a TUI)."""
        return any(c.peer.pid == pid for c in self._conns)

    async def stream(self, conn: Connection) -> Mapping[str, object]:
        """Push approval events to ``conn`` until it goes away.

        Each subscriber counts as an approver for code approvals; when the last one leaves,
        approvals only it could answer end with ``APPROVAL_UNAVAILABLE``
        (``docs/threat-model.md``).
        """
        queue: asyncio.Queue[tuple[str, Approval]] = asyncio.Queue(maxsize=256)

        def on_event(event: object) -> None:
            kind = getattr(event, "kind", None)
            approval = getattr(event, "approval", None)
            if isinstance(approval, Approval) and not queue.full():
                queue.put_nowait((str(getattr(kind, "value", kind)), approval))

        unsubscribe = self._service.approvals.subscribe(on_event)
        self._conns.add(conn)
        try:
            await conn.send_event("subscribed", {})
            await _pump(conn, queue)
        finally:
            unsubscribe()
            self._left(conn)
        return {}

    def _left(self, conn: Connection) -> None:
        self._conns.discard(conn)
        if not self._conns:
            ended = self._service.approver_detached()
            if ended:
                log.warning(
                    "the last approver (TUI) left: %d code approval(s) ended with "
                    "APPROVAL_UNAVAILABLE",
                    len(ended),
                )


async def _pump(conn: Connection, queue: asyncio.Queue[tuple[str, Approval]]) -> None:
    """Send queued approval changes until the connection closes."""
    while not conn.closed:
        getter = asyncio.ensure_future(queue.get())
        closed = asyncio.ensure_future(conn.closed_event.wait())
        done, _ = await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
        closed.cancel()
        if getter not in done:
            getter.cancel()
            return
        kind, approval = getter.result()
        await conn.send_event(f"approval_{kind}", {"approval": approval.as_dict()})
