"""The TUI app: screen routing and the connection to the daemon; a thin client of its socket.

A background worker keeps a status poll and the ``events`` subscription going and reconnects
with backoff when the daemon goes away.  Pending approvals queue up and pop up one dialog at a
time on top of whatever screen is showing (except the break-glass touch, which the break-glass
screen prompts for itself).  Nothing here holds a secret or decides policy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import App
from textual.reactive import reactive

from vaultd.errors import VaultError
from vaultd.ipc.protocol import Event

from .approval import ApprovalAnswer, ApprovalDialog
from .breakglass import BreakGlassScreen
from .dashboard import DashboardScreen
from .data import (
    BREAK_GLASS_ACTION,
    DaemonPort,
    DaemonStatus,
    PendingApproval,
    Secret,
    approval_of,
)
from .events import EventsScreen
from .messages import (
    ApprovalRequested,
    ApprovalResolved,
    ClearCooldown,
    DaemonConnected,
    DaemonDisconnected,
    StatusReceived,
)
from .styles import CSS
from .unlock import UnlockDialog

if TYPE_CHECKING:
    from vaultd.settings import Settings

CONNECTING = "connecting to vaultd…"
CONNECTED = "connected"
RECONNECTED = "reconnected"
SETTLE_SECONDS = 1.0


def _utc_now() -> datetime:
    return datetime.now(UTC)


class VaultApp(App[None]):
    """Dashboard, audit view, break-glass, unlock and approval dialogs over one daemon client."""

    CSS = CSS
    TITLE = "vaultd"
    ENABLE_COMMAND_PALETTE = False

    daemon_status: reactive[DaemonStatus | None] = reactive(None)
    connection: reactive[str] = reactive(CONNECTING)
    pending: reactive[tuple[PendingApproval, ...]] = reactive(())
    activity: reactive[int] = reactive(0)
    """Counts events pushed by the daemon and requests sent from here (the audit view reloads)."""

    def __init__(
        self,
        socket_path: Path,
        client: DaemonPort,
        *,
        clock: Callable[[], datetime] = _utc_now,
        tick: float = 1.0,
        poll: float = 5.0,
        audit_poll: float = 3.0,
        retry: tuple[float, float] = (0.5, 10.0),
    ) -> None:
        super().__init__()
        self.socket_path = socket_path
        self.client = client
        self.clock = clock
        self._tick = tick
        self._poll = poll
        self._audit_poll = audit_poll
        self._retry_first, self._retry_max = retry
        self._pending: dict[str, tuple[PendingApproval, int]] = {}
        self._polls_started = 0
        self._dialog: ApprovalDialog | None = None
        self._was_disconnected = False

    def on_mount(self) -> None:
        self.push_screen(DashboardScreen(self.socket_path, clock=self.clock, tick=self._tick))
        self.watch_daemon()
        self.set_interval(self._poll, self.refresh_status)

    # --- talking to the daemon (workers) ---------------------------------------------------

    async def _fetch_status(self) -> None:
        self._polls_started += 1
        number = self._polls_started
        reply = await self.client.request("status")
        self.post_message(StatusReceived(DaemonStatus.from_wire(reply), number))

    @work(exclusive=True, group="daemon")
    async def watch_daemon(self) -> None:
        """Subscribe to events; on failure retry with exponential backoff, forever."""
        delay = self._retry_first
        while True:
            reason = "the daemon ended the event stream"
            try:
                await self._fetch_status()
                async for event in self.client.events():
                    if event.name == "subscribed":
                        delay = self._retry_first
                        self.post_message(DaemonConnected())
                        await self._fetch_status()  # approvals opened before we subscribed
                    else:
                        self._dispatch(event)
            except VaultError as exc:
                reason = f"{exc.code}: {exc.message}"
            except OSError as exc:
                reason = f"connection failed: {exc.strerror or type(exc).__name__}"
            self.post_message(DaemonDisconnected(reason, delay))
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._retry_max)

    def _dispatch(self, event: Event) -> None:
        self.activity += 1
        try:
            if event.name in ("approval_opened", "approval_joined"):
                self.post_message(ApprovalRequested(approval_of(event)))
            elif event.name == "approval_resolved":
                self.post_message(ApprovalResolved(approval_of(event)))
        except VaultError as exc:
            self.notify(f"{exc.code}: {exc.message}", severity="warning")

    @work(exclusive=True, group="status")
    async def refresh_status(self) -> None:
        """Poll ``status`` once (the event worker reports connection trouble)."""
        await self._fetch_status_quietly()

    async def _fetch_status_quietly(self) -> None:
        try:
            await self._fetch_status()
        except (VaultError, OSError):
            return

    async def _send(self, reply: Awaitable[object], done: str, profile: str = "") -> None:
        """Await a request; report the outcome as a notice."""
        try:
            await reply
        except VaultError as exc:
            self.notify(f"{exc.code}: {exc.message}", severity="error", timeout=10)
            return
        except OSError as exc:
            self.notify(f"failed: {exc.strerror or type(exc).__name__}", severity="error")
            return
        finally:
            self.activity += 1
        self.notify(f"{done} {profile}".rstrip())

    @work(group="answers")
    async def send_answer(self, answer: ApprovalAnswer, profile: str) -> None:
        """Send the user's decision; the code goes straight to the daemon."""
        request = self.client.request
        if answer.verdict == "approve":
            approval_id, code = answer.approval_id, answer.code
            await self._send(request("approve", id=approval_id, code=code), "approved", profile)
            # The session lands once STS answers; look again shortly.
            self.set_timer(SETTLE_SECONDS, self.refresh_status)
        elif answer.verdict == "deny":
            await self._send(request("deny", id=answer.approval_id), "denied", profile)
        await self._fetch_status_quietly()

    @work(exclusive=True, group="lock")
    async def send_lock(self) -> None:
        """Drop the daemon's cached sessions and pending approvals."""
        await self._send(self.client.request("lock"), "locked")
        await self._fetch_status_quietly()

    @on(ClearCooldown)
    @work(group="answers")
    async def _clear_cooldown(self, message: ClearCooldown) -> None:
        """End a profile's deny cooldown, then show the fresh status."""
        request = self.client.request("approvals", clear_cooldown=message.profile)
        await self._send(request, "cooldown ended:", message.profile)
        await self._fetch_status_quietly()

    # --- actions (bound on the screens) ----------------------------------------------------

    def action_refresh_status(self) -> None:
        """Poll the daemon now."""
        self.refresh_status()

    def action_lock(self) -> None:
        """Lock the vault: the daemon drops sessions and approvals."""
        self.send_lock()

    def action_show_events(self) -> None:
        """Open the audit view."""
        self.push_screen(EventsScreen(self.client, poll=self._audit_poll))

    def action_break_glass(self) -> None:
        """Open the break-glass screen (a fresh one: nothing from an earlier visit remains)."""
        self.push_screen(BreakGlassScreen(self.client, clock=self.clock, tick=self._tick))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Offer Unlock only while the daemon is sealed."""
        if action == "unlock":
            return self.daemon_status is not None and self.daemon_status.sealed
        return True

    def action_unlock(self) -> None:
        """Ask for the token PIN (offered only while the daemon is sealed)."""
        self.push_screen(UnlockDialog(self._unlock), self._unlocked)

    async def _unlock(self, pin: Secret, final_try_answer: str | None) -> None:
        # final_try_answer: the challenge words the person typed (docs/threat-model.md T9)
        send = self.client.request
        try:
            await (
                send("unlock", pin=pin.value)
                if final_try_answer is None
                else send("unlock", pin=pin.value, final_try_answer=final_try_answer)
            )
        finally:
            self.activity += 1

    def _unlocked(self, unlocked: bool | None) -> None:
        if unlocked:
            self.notify("unlocked: the vault is unsealed")
            self.refresh_status()

    # --- state -----------------------------------------------------------------------------

    @on(DaemonConnected)
    def _connected(self) -> None:
        self.connection = RECONNECTED if self._was_disconnected else CONNECTED
        if self._was_disconnected:
            self.notify("reconnected to vaultd")
        self._was_disconnected = False

    @on(DaemonDisconnected)
    def _disconnected(self, message: DaemonDisconnected) -> None:
        if not self._was_disconnected:
            self.notify(f"lost vaultd: {message.reason}", severity="warning", markup=False)
        self._was_disconnected = True
        self.connection = f"daemon disconnected — retrying in {message.retry_in:g} s"

    @on(StatusReceived)
    def _status_received(self, message: StatusReceived) -> None:
        self.daemon_status = message.status
        self.refresh_bindings()
        listed = {a.id: a for a in message.status.approvals}
        for approval_id, (_, seen) in list(self._pending.items()):
            if approval_id not in listed and seen < message.number:
                self._drop(approval_id)
        for approval in listed.values():
            self._add(approval)

    @on(ApprovalRequested)
    def _approval_requested(self, message: ApprovalRequested) -> None:
        self._add(message.approval)

    @on(ApprovalResolved)
    def _approval_resolved(self, message: ApprovalResolved) -> None:
        self._drop(message.approval.id)
        self.set_timer(SETTLE_SECONDS, self.refresh_status)  # its progress, or a cooldown

    def _add(self, approval: PendingApproval) -> None:
        if approval.state != "pending" or approval.action == BREAK_GLASS_ACTION:
            return  # break glass: answered by a touch the daemon waits for
        known = self._pending.get(approval.id)
        if known is None:
            # Remember the latest poll started: only a later poll can prove it is gone.
            self._pending[approval.id] = (approval, self._polls_started)
        else:  # seen again (joined, or polled): keep its poll mark, show who joined
            self._pending[approval.id] = (approval, known[1])
            if self._dialog is not None and self._dialog.approval.id == approval.id:
                self._dialog.show_joined(approval)
        self._pending_changed()

    def _drop(self, approval_id: str) -> None:
        if self._pending.pop(approval_id, None) is None:
            return
        if self._dialog is not None and self._dialog.approval.id == approval_id:
            self._dialog.close()
        self._pending_changed()

    def _pending_changed(self) -> None:
        self.pending = tuple(a for a, _ in self._pending.values())
        if self._dialog is None and self._pending:
            approval = self.pending[0]
            self._dialog = ApprovalDialog(approval, clock=self.clock, tick=self._tick)
            self.push_screen(self._dialog, self._answered)
        if self._dialog is not None:
            self._dialog.set_position(1, len(self._pending))

    def _answered(self, answer: ApprovalAnswer | None) -> None:
        dialog, self._dialog = self._dialog, None
        if answer is None or dialog is None:
            return
        profile = dialog.approval.profile
        if answer.verdict in ("approve", "deny"):
            self.send_answer(answer, profile)
        elif answer.verdict == "expired":
            self.notify(f"approval for {profile} timed out", severity="warning", timeout=10)
        self._pending.pop(answer.approval_id, None)
        self._pending_changed()


def make_app(
    settings: Settings | Path,
    client: DaemonPort,
    *,
    clock: Callable[[], datetime] = _utc_now,
    tick: float = 1.0,
    poll: float = 5.0,
    audit_poll: float = 3.0,
    retry: tuple[float, float] = (0.5, 10.0),
) -> VaultApp:
    """Build the app for the daemon at ``settings.socket`` (or a socket path) over ``client``.

    ``clock`` gives aware UTC wall time for countdowns; ``tick`` is the countdown period,
    ``poll`` the status-poll period, ``audit_poll`` the audit view's and ``retry`` the first
    and largest reconnect delay.
    """
    socket_path = settings if isinstance(settings, Path) else settings.socket
    return VaultApp(
        socket_path,
        client,
        clock=clock,
        tick=tick,
        poll=poll,
        audit_poll=audit_poll,
        retry=retry,
    )
