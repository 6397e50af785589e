"""Pending human approvals: deny by default, final outcomes, deadlines on the monotonic clock.

An approval is opened for one request burst, shown to the user (TUI, ``vaultd approvals``),
and answered with :meth:`ApprovalBook.approve` or :meth:`ApprovalBook.deny`.  With no answer it
times out; nothing is ever approved by default (docs/threat-model.md T2, F12-F15).
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from vaultd.core import serving
from vaultd.core.model import CODE_RE, ApprovalMethod, ClientDisplay, Requester
from vaultd.core.ports import Clock
from vaultd.errors import (
    ApprovalNotFound,
    ApprovalTimeout,
    ApprovalUnavailable,
    BadRequest,
    CodeMalformed,
    Denied,
)

_log = logging.getLogger(__name__)

_SHOWABLE_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")

NOBODY_TO_ASK = (
    "nothing can show the code prompt (no terminal, no `vaultd tui`); run the command in a "
    "terminal, open `vaultd tui`, or set approval.out_of_band = true to answer with "
    "`vaultd approve`"
)
"""What an ``APPROVAL_UNAVAILABLE`` for a typed-code approval tells the user to do."""

MAX_JOINED = 32
"""How many joined requesters an approval lists; the rest are only counted (``joined_more``)."""

RETAIN_FINISHED_SECONDS = 60.0
"""How long a finished approval still answers ``wait`` (then it is forgotten)."""


_ID_ALPHABET = "abcdefghijkmnopqrstuvwxyz23456789"


def new_approval_id() -> str:
    """A short random id (70 bits) of lowercase letters and digits.

    No ``-`` or ``_``: an id is typed as a command-line argument (`vaultd approve ID`), where a
    leading ``-`` would read as an option.
    """
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(14))


class ApprovalState(StrEnum):
    """Where an approval stands; every state but ``PENDING`` is final."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    UNAVAILABLE = "unavailable"


def code_approval_deliverable(*, interactive: bool, approvers: int, out_of_band: bool) -> bool:
    """Whether someone can be asked for a typed MFA code (docs/threat-model.md T2, F14).

    True when the requesting client prompts on its own terminal (``interactive``), when at
    least one approver (a `vaultd tui` events subscriber) is attached, or when the user chose
    ``approval.out_of_band`` (`vaultd approve` from elsewhere).  Otherwise a code approval
    could only time out, so it is refused at once with ``APPROVAL_UNAVAILABLE``.
    """
    return interactive or approvers > 0 or out_of_band


PROMPT_DIALOGS = ("pinentry", "zenity", "kdialog", "osascript")
"""The dialogs ``approval.prompt`` can name, which the daemon runs itself."""


def prompt_dialog(
    setting: str, *, interactive: bool, approvers: int, display: ClientDisplay | None
) -> str | None:
    """The dialog the daemon runs for a typed-code approval, or None when it runs none.

    Only for a client with no terminal of its own but a display.  ``auto`` prefers an
    attached `vaultd tui` and otherwise uses pinentry; a named dialog is always used then;
    ``terminal`` and ``none`` never run one (the client's terminal or the TUI asks, as before).
    """
    if interactive or display is None or setting not in ("auto", *PROMPT_DIALOGS):
        return None
    if setting == "auto":
        return None if approvers else "pinentry"
    return setting


def _rfc3339(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Approval:
    """A snapshot of one approval request; no secrets."""

    id: str
    profile: str
    action: str
    requester: Requester
    methods: ApprovalMethod
    created_at: datetime
    expires_at: datetime
    created_mono: float
    deadline_mono: float
    state: ApprovalState = ApprovalState.PENDING
    mfa_serial: str = ""
    """The MFA device the code or touch is for (a chained role's: its source profile's)."""
    joined: tuple[Requester, ...] = ()
    joined_more: int = 0

    def as_dict(self) -> dict[str, object]:
        """JSON-safe view for ``vaultd approvals --json`` and the TUI."""
        return {
            "id": self.id,
            "profile": self.profile,
            "action": self.action,
            "methods": self.methods.value,
            "state": self.state.value,
            "created_at": _rfc3339(self.created_at),
            "expires_at": _rfc3339(self.expires_at),
            "requested_by": asdict(self.requester),
            "mfa_serial": self.mfa_serial,
            "joined": [asdict(r) for r in self.joined],
            "joined_more": self.joined_more,
        }


@dataclass(frozen=True, slots=True)
class Resolution:
    """An approved approval and the MFA code submitted with it (``None`` for a touch)."""

    approval: Approval
    code: str | None = field(default=None, repr=False)


class ApprovalEventKind(StrEnum):
    """What happened to an approval."""

    OPENED = "opened"
    JOINED = "joined"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class ApprovalEvent:
    """Sent to observers; carries the snapshot, never the code."""

    kind: ApprovalEventKind
    approval: Approval


Observer = Callable[[ApprovalEvent], None]


@dataclass(slots=True)
class _Record:
    approval: Approval
    done: asyncio.Event = field(default_factory=asyncio.Event)
    code: str | None = field(default=None, repr=False)
    finished_mono: float = 0.0


class ApprovalBook:
    """The set of open approvals, and the final outcome of recent ones."""

    def __init__(
        self,
        clock: Clock,
        *,
        timeout: float = serving.DEFAULT_APPROVAL_TIMEOUT,
        id_factory: Callable[[], str] = new_approval_id,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``sleep`` is what ``wait`` uses to wake at the deadline; tests may drive it."""
        self._clock = clock
        self._timeout = serving.validate_approval_timeout(timeout)
        self._new_id = id_factory
        self._sleep = sleep
        self._records: dict[str, _Record] = {}
        self._observers: list[Observer] = []

    # --- opening and observing --------------------------------------------------------

    def open(
        self,
        profile: str,
        action: str,
        requester: Requester,
        methods: ApprovalMethod,
        *,
        mfa_serial: str = "",
    ) -> Approval:
        """Open a pending approval for the MFA device ``mfa_serial`` that times out after the
        book's timeout."""
        self._prune()
        approval_id = self._unique_id()
        now, mono = self._clock.now(), self._clock.monotonic()
        approval = Approval(
            id=approval_id,
            profile=profile,
            action=action,
            requester=requester,
            methods=methods,
            created_at=now,
            expires_at=now + timedelta(seconds=self._timeout),
            created_mono=mono,
            deadline_mono=mono + self._timeout,
            mfa_serial=mfa_serial,
        )
        self._records[approval_id] = _Record(approval)
        self._notify(ApprovalEvent(ApprovalEventKind.OPENED, approval))
        return approval

    def subscribe(self, callback: Observer) -> Callable[[], None]:
        """Call ``callback`` on every opened, joined and resolved approval; returns an
        unsubscribe."""
        self._observers.append(callback)

        def unsubscribe() -> None:
            if callback in self._observers:
                self._observers.remove(callback)

        return unsubscribe

    def join(self, approval_id: str, requester: Requester) -> Approval | None:
        """List ``requester`` as waiting on the pending approval ``approval_id`` too (it rides
        the same answer); past :data:`MAX_JOINED` it is only counted.  None when the approval
        is no longer pending (nothing is left to show)."""
        record = self._records.get(approval_id)
        if record is None or record.approval.state is not ApprovalState.PENDING:
            return None
        current = record.approval
        if len(current.joined) < MAX_JOINED:
            record.approval = replace(current, joined=(*current.joined, requester))
        else:
            record.approval = replace(current, joined_more=current.joined_more + 1)
        self._notify(ApprovalEvent(ApprovalEventKind.JOINED, record.approval))
        return record.approval

    def pending(self) -> list[Approval]:
        """Approvals still waiting for an answer, oldest first (due ones are expired first)."""
        self.expire_due()
        return [
            r.approval for r in self._records.values() if r.approval.state is ApprovalState.PENDING
        ]

    # --- answering --------------------------------------------------------------------

    def approve(self, approval_id: str, *, code: str | None) -> Approval:
        """Approve, with the 6-digit MFA code when the approval takes one.

        The code's format is checked before anything else (``CodeMalformed``); an unknown,
        finished or overdue id raises ``ApprovalNotFound``.
        """
        if code is not None and not CODE_RE.fullmatch(code):
            raise CodeMalformed("an MFA code is exactly 6 ASCII digits; type the code again")
        record = self._open_record(approval_id)
        methods = record.approval.methods
        if code is None and methods is ApprovalMethod.CODE:
            raise CodeMalformed(
                f"approval {approval_id} needs the 6-digit MFA code; approve it with the code"
            )
        if code is not None and methods is ApprovalMethod.TOUCH:
            raise BadRequest(
                f"field code: approval {approval_id} takes a touch, not a code; approve it "
                "without a code"
            )
        record.code = code
        return self._finish(record, ApprovalState.APPROVED)

    def deny(self, approval_id: str) -> Approval:
        """Deny a pending approval; final for every waiter."""
        return self._finish(self._open_record(approval_id), ApprovalState.DENIED)

    def withdraw(self, approval_id: str) -> Approval:
        """End a pending approval that nobody can answer any more (its last approver left).

        Every waiter gets ``ApprovalUnavailable``.  Nobody denied it, so no deny cooldown
        follows (the single-flight cooldown starts on ``Denied``/``ApprovalTimeout`` only).
        """
        return self._finish(self._open_record(approval_id), ApprovalState.UNAVAILABLE)

    def expire_due(self) -> list[Approval]:
        """Time out every approval past its deadline; returns them.  Call periodically."""
        mono = self._clock.monotonic()
        due = [
            r
            for r in self._records.values()
            if r.approval.state is ApprovalState.PENDING and mono >= r.approval.deadline_mono
        ]
        expired = [self._finish(r, ApprovalState.TIMED_OUT) for r in due]
        self._prune()
        return expired

    def cancel_all(self, profile: str | None = None) -> list[Approval]:
        """Cancel every pending approval, or those of ``profile`` (vault lock, profile clear);
        their waiters get ``Denied``."""
        pending = [
            r
            for r in self._records.values()
            if r.approval.state is ApprovalState.PENDING and profile in (None, r.approval.profile)
        ]
        return [self._finish(r, ApprovalState.CANCELLED) for r in pending]

    # --- waiting ----------------------------------------------------------------------

    async def wait(self, approval_id: str) -> Resolution:
        """Wait for the outcome: the ``Resolution`` if approved, else raise.

        Raises ``Denied`` (denied or cancelled by a lock), ``ApprovalTimeout`` (no answer by
        the deadline, which ``wait`` enforces itself) or ``ApprovalNotFound``.
        """
        record = self._records.get(approval_id)
        if record is None:
            raise ApprovalNotFound(self._not_found(approval_id))
        while record.approval.state is ApprovalState.PENDING:
            remaining = record.approval.deadline_mono - self._clock.monotonic()
            if remaining <= 0:
                self._finish(record, ApprovalState.TIMED_OUT)
                break
            answered = asyncio.ensure_future(record.done.wait())
            timer = asyncio.ensure_future(self._sleep(remaining))
            try:
                await asyncio.wait({answered, timer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                answered.cancel()
                timer.cancel()
        return self._outcome(record)

    # --- internals --------------------------------------------------------------------

    def _unique_id(self) -> str:
        for _ in range(8):
            candidate = self._new_id()
            if candidate not in self._records:
                return candidate
        raise ApprovalUnavailable("could not allocate a fresh approval id; retry the request")

    def _open_record(self, approval_id: str) -> _Record:
        record = self._records.get(approval_id)
        if record is not None and record.approval.state is ApprovalState.PENDING:
            if self._clock.monotonic() < record.approval.deadline_mono:
                return record
            self._finish(record, ApprovalState.TIMED_OUT)
        raise ApprovalNotFound(self._not_found(approval_id))

    @staticmethod
    def _not_found(approval_id: str) -> str:
        shown = approval_id if _SHOWABLE_ID.fullmatch(approval_id) else "with that id"
        return (
            f"no pending approval {shown} (it was answered, timed out or never existed); "
            "list open ones with `vaultd approvals`"
        )

    def _finish(self, record: _Record, state: ApprovalState) -> Approval:
        record.approval = replace(record.approval, state=state)
        record.finished_mono = self._clock.monotonic()
        if state is not ApprovalState.APPROVED:
            record.code = None
        record.done.set()
        self._notify(ApprovalEvent(ApprovalEventKind.RESOLVED, record.approval))
        return record.approval

    def _outcome(self, record: _Record) -> Resolution:
        approval = record.approval
        if approval.state is ApprovalState.APPROVED:
            return Resolution(approval, record.code)
        what = f"approval {approval.id} for profile {approval.profile}"
        if approval.state is ApprovalState.TIMED_OUT:
            raise ApprovalTimeout(
                f"{what} got no answer within {self._timeout:g} s; request again and answer "
                "the prompt in `vaultd tui` or with `vaultd approve`"
            )
        if approval.state is ApprovalState.CANCELLED:
            raise Denied(
                f"vault locked or profile cleared: {what} was cancelled; request again "
                "(after `vaultd unlock` if the vault is sealed)"
            )
        if approval.state is ApprovalState.UNAVAILABLE:
            raise ApprovalUnavailable(f"{what} ended: {NOBODY_TO_ASK}")
        raise Denied(f"{what} was denied by the user")

    def _prune(self) -> None:
        horizon = self._clock.monotonic() - RETAIN_FINISHED_SECONDS
        stale = [
            key
            for key, r in self._records.items()
            if r.approval.state is not ApprovalState.PENDING and r.finished_mono <= horizon
        ]
        for key in stale:
            del self._records[key]

    def _notify(self, event: ApprovalEvent) -> None:
        for callback in list(self._observers):
            try:
                callback(event)
            except Exception:
                _log.exception("an approval observer failed; the approval is unaffected")
