"""The TUI's plain data layer: parsing daemon replies, countdown text and the event filter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from vaultd.tui.data import (
    AuditRecord,
    DaemonStatus,
    GrantInfo,
    PendingApproval,
    Secret,
    export_lines,
    hms,
    reason_ok,
)

from vaultd.core.approvals import ApprovalBook
from vaultd.core.model import ApprovalMethod
from vaultd.errors import ProtocolError
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


def test_audit_record_parses_and_filters_by_profile_and_event() -> None:
    wire = {
        "seq": 7,
        "time": "2026-01-01T12:00:05.123456Z",
        "event": "breakglass_granted",
        "profile": "prod-root",
        "severity": "critical",
        "break_glass": True,
        "client": {"pid": 4242, "executable": "/usr/bin/python3.11", "cwd": "/x"},
        "grant": "abc123",
        "prev": "0" * 64,
        "mac": "f" * 64,
    }
    record = AuditRecord.from_wire(wire)
    assert (record.seq, record.event, record.profile) == (7, "breakglass_granted", "prod-root")
    assert record.at == NOW + timedelta(seconds=5, microseconds=123456)
    assert record.client == "pid 4242 /usr/bin/python3.11"
    assert record.detail == "grant=abc123"  # prev and mac are chain plumbing, not shown
    assert record.critical
    assert record.matches("") and record.matches("ROOT granted") and record.matches("prod")
    assert not record.matches("dev") and not record.matches("root read")
    plain = AuditRecord.from_wire({"seq": 1, "time": wire["time"], "event": "lock"})
    assert not plain.critical and (plain.profile, plain.client, plain.detail) == ("", "", "")
    with pytest.raises(ProtocolError, match="'time'"):
        AuditRecord.from_wire({**wire, "time": "yesterday"})
    with pytest.raises(ProtocolError, match="'seq'"):
        AuditRecord.from_wire({**wire, "seq": "7"})


@pytest.mark.parametrize(
    ("reason", "ok"),
    [
        ("", False),
        ("fix  it", False),
        ("  fix   prod  db ", True),
        ("x" * 500, True),
        ("x" * 501, False),
        ("incident 42", True),
    ],
)
def test_reason_ok_mirrors_the_daemon(reason: str, ok: bool) -> None:
    assert reason_ok(reason) is ok


def test_export_lines_quote_every_value_and_name_missing_fields() -> None:
    output = {
        "Version": 1,
        "AccessKeyId": "ASIAX",
        "SecretAccessKey": "a'b",
        "SessionToken": "tok",
        "Expiration": "2026-01-01T12:15:00Z",
    }
    assert export_lines({"output": output}).splitlines() == [
        "export AWS_ACCESS_KEY_ID=ASIAX",
        "export AWS_SECRET_ACCESS_KEY='a'\"'\"'b'",
        "export AWS_SESSION_TOKEN=tok",
        "export AWS_CREDENTIAL_EXPIRATION=2026-01-01T12:15:00Z",
    ]
    with pytest.raises(ProtocolError, match="'SessionToken'") as caught:
        export_lines({"output": {**output, "SessionToken": None}})
    assert "a'b" not in str(caught.value)


def test_status_grants_are_parsed_and_optional() -> None:
    base: dict[str, object] = {
        "sealed": True,
        "token_label": "t",
        "pid": 1,
        "socket": "/s",
        "profiles": [],
        "approvals": [],
    }
    assert DaemonStatus.from_wire(base).grants == ()
    grant = {
        "id": "g1",
        "profile": "root",
        "reason": "incident 42",
        "expires_at": "2026-01-01T12:15:00Z",
        "read": False,
    }
    status = DaemonStatus.from_wire({**base, "grants": [grant]})
    assert status.grants == (
        GrantInfo("g1", "root", "incident 42", NOW + timedelta(minutes=15), False),
    )
    with pytest.raises(ProtocolError, match="'read'"):
        DaemonStatus.from_wire({**base, "grants": [{**grant, "read": "no"}]})


def test_secret_hides_its_value_from_repr() -> None:
    secret = Secret("246810")
    assert secret.value == "246810" and "246810" not in repr(secret)
