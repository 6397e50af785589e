"""The TUI's plain data layer: parsing daemon replies, countdown text and the event filter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from vaultd.tui.data import DaemonStatus, LogEntry, PendingApproval, hms, log_entry

from vaultd.core.approvals import ApprovalBook
from vaultd.core.model import ApprovalMethod
from vaultd.errors import ProtocolError
from vaultd.ipc.protocol import Event
from vaultd.testing.clock import FakeClock

from .fakes import REQUESTER

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0:00:00"), (59.9, "0:00:59"), (3723, "1:02:03"), (36000, "10:00:00"), (-5, "0:00:00")],
)
def test_hms(seconds: float, text: str) -> None:
    assert hms(seconds) == text


def test_pending_approval_parses_the_core_wire_form() -> None:
    book = ApprovalBook(FakeClock(NOW), timeout=50)
    approval = book.open("dev", "exec", REQUESTER, ApprovalMethod.TOUCH_OR_CODE)
    parsed = PendingApproval.from_wire(approval.as_dict())
    assert (parsed.id, parsed.profile, parsed.action) == (approval.id, "dev", "exec")
    assert parsed.expires_at == NOW + timedelta(seconds=50)
    assert (parsed.pid, parsed.parent_pid, parsed.parent_command) == (4242, 4200, "aws s3 ls")
    assert parsed.takes_code and parsed.takes_touch


@pytest.mark.parametrize(
    "broken",
    [
        {"sealed": "no"},
        {"pid": True},
        {"profiles": [1]},
        {"profiles": [{"name": "dev", "kind": "session", "approval": "code", "expires_at": "x"}]},
        {"approvals": None},
    ],
)
def test_malformed_status_is_a_protocol_error(broken: dict[str, object]) -> None:
    good: dict[str, object] = {
        "sealed": False,
        "token_label": "vaultd",
        "pid": 1,
        "socket": "/s",
        "profiles": [],
        "approvals": [],
    }
    DaemonStatus.from_wire(good)
    with pytest.raises(ProtocolError, match="malformed reply"):
        DaemonStatus.from_wire({**good, **broken})


def test_log_entry_filter_matches_every_word_in_profile_or_event() -> None:
    book = ApprovalBook(FakeClock(NOW), timeout=50)
    approval = book.open("prod-admin", "credential_process", REQUESTER, ApprovalMethod.CODE)
    entry = log_entry(Event("approval_opened", {"approval": approval.as_dict()}), NOW)
    assert entry.profile == "prod-admin" and approval.id in entry.detail
    assert entry.matches("") and entry.matches("PROD opened") and entry.matches("admin")
    assert not entry.matches("dev") and not entry.matches("prod resolved")
    assert log_entry(Event("subscribed", {}), NOW) == LogEntry(NOW, "subscribed")
