"""Messages the connection worker posts to the app (data flows up as messages)."""

from __future__ import annotations

from textual.message import Message

from .data import DaemonStatus, PendingApproval


class StatusReceived(Message):
    """A fresh ``status`` reply: sessions, daemon state and the pending approvals.

    ``number`` counts status requests in the order they were sent.
    """

    def __init__(self, status: DaemonStatus, number: int) -> None:
        super().__init__()
        self.status = status
        self.number = number


class ApprovalRequested(Message):
    """An approval is pending and should be shown."""

    def __init__(self, approval: PendingApproval) -> None:
        super().__init__()
        self.approval = approval


class ApprovalResolved(Message):
    """An approval was answered, timed out or cancelled (here or elsewhere)."""

    def __init__(self, approval: PendingApproval) -> None:
        super().__init__()
        self.approval = approval


class DaemonDisconnected(Message):
    """The daemon went away; the worker retries after ``retry_in`` seconds."""

    def __init__(self, reason: str, retry_in: float) -> None:
        super().__init__()
        self.reason = reason
        self.retry_in = retry_in


class DaemonConnected(Message):
    """The event subscription is up (again)."""


class ClearCooldown(Message):
    """The user asked to end ``profile``'s deny cooldown (key c on the dashboard)."""

    def __init__(self, profile: str) -> None:
        super().__init__()
        self.profile = profile
