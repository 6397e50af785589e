"""The credential report: rows at fixed times, CSV and JSON output, audit-log reading."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from vaultd.core.model import (
    ApprovalMethod,
    Profile,
    ProfileKind,
    RecordInfo,
    RecordKind,
    mask_key,
)
from vaultd.core.records import seed_record_name
from vaultd.core.report import (
    COLUMNS,
    ReportRow,
    build_report,
    to_csv,
    to_json,
)
from vaultd.store.audit import AuditLog
from vaultd.store.audit_facts import last_rotated_from_audit, last_used_from_audit
from vaultd.testing.clock import FakeClock

NOW = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
DEV_KEY = "AKIAEXAMPLEDEV000001"
OPS_KEY = "AKIAEXAMPLEOPS000002"
ROOT_KEY = "AKIAEXAMPLEROOT00003"
SERIAL_DEV = "arn:aws:iam::123456789012:mfa/dev"
SERIAL_OPS = "arn:aws:iam::123456789012:mfa/ops"


@dataclass(frozen=True)
class Authenticator:
    name: str
    last_used: datetime | None


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


RECORDS = [
    RecordInfo(RecordKind.KEY_PAIR, "ops", days_ago(89), mask_key(OPS_KEY)),
    RecordInfo(RecordKind.KEY_PAIR, "dev", days_ago(91), mask_key(DEV_KEY)),
    RecordInfo(RecordKind.KEY_PAIR, "root", days_ago(10), mask_key(ROOT_KEY), root=True),
    RecordInfo(RecordKind.TOTP_SEED, seed_record_name(SERIAL_DEV), days_ago(5)),
    RecordInfo(RecordKind.FIDO2_CREDENTIAL, "yubikey", days_ago(5)),
]
PROFILES = {
    "dev": Profile(
        "dev",
        ProfileKind.SESSION,
        credentials="dev",
        mfa_serial=SERIAL_DEV,
        approval=ApprovalMethod.TOUCH,
    ),
    "dev-admin": Profile(
        "dev-admin",
        ProfileKind.ROLE,
        source_profile="dev",
        role_arn="arn:aws:iam::123456789012:role/admin",
    ),
    "ops": Profile("ops", ProfileKind.SESSION, credentials="ops", mfa_serial=SERIAL_OPS),
    "break": Profile("break", ProfileKind.ROOT, credentials="root"),
}
FIDO2 = [
    Authenticator("yubikey", datetime(2026, 3, 30, 8, 0, tzinfo=UTC)),
    Authenticator("spare", None),
]


def report(*, seeds: set[str] | None = None) -> list[ReportRow]:
    return build_report(
        RECORDS,
        last_used={
            "dev": datetime(2026, 3, 31, 9, 0, tzinfo=UTC),
            "dev-admin": datetime(2026, 3, 31, 17, 30, tzinfo=UTC),
        },
        fido2=FIDO2,
        profiles=PROFILES,
        seeds={seed_record_name(SERIAL_DEV)} if seeds is None else seeds,
        now=NOW,
        last_rotated={"dev": days_ago(91)},
    )


def test_one_row_per_key_pair_sorted_by_name() -> None:
    rows = build_report(RECORDS, last_used={}, fido2=FIDO2, profiles=PROFILES, seeds=set(), now=NOW)
    assert [(r.name, r.kind) for r in rows] == [
        ("dev", "iam_user"),
        ("ops", "iam_user"),
        ("root", "root"),
    ]


@pytest.mark.parametrize(
    ("age_days", "due"), [(89, False), (90, False), (90.01, True), (91, True), (400, True)]
)
def test_rotation_is_due_after_rotation_days(age_days: float, due: bool) -> None:
    record = RecordInfo(RecordKind.KEY_PAIR, "k", days_ago(age_days), mask_key(DEV_KEY))
    [row] = build_report([record], last_used={}, fido2=[], profiles={}, seeds=set(), now=NOW)
    assert row.rotation_due is due
    assert row.age_days == int(age_days)


def test_rotation_days_is_configurable() -> None:
    record = RecordInfo(RecordKind.KEY_PAIR, "k", days_ago(40), mask_key(DEV_KEY))
    rows = build_report(
        [record], last_used={}, fido2=[], profiles={}, seeds=set(), now=NOW, rotation_days=30
    )
    assert rows[0].rotation_due


def test_mfa_method_last_used_and_authenticators() -> None:
    dev, ops, root = report()
    assert dev.mfa_method == ("touch", "seed")  # dev: touch; dev-admin: code, seed stored
    assert dev.profiles == ("dev", "dev-admin")
    assert dev.last_used == datetime(2026, 3, 31, 17, 30, tzinfo=UTC)  # the role's use
    assert dev.authenticators == 2
    assert dev.authenticator_last_used == datetime(2026, 3, 30, 8, 0, tzinfo=UTC)
    assert dev.last_rotated == days_ago(91)
    assert (ops.mfa_method, ops.last_used, ops.authenticators) == (("typed",), None, 0)
    assert ops.authenticator_last_used is None and ops.last_rotated is None
    assert (root.mfa_method, root.profiles) == (("none",), ("break",))


def test_touch_needs_the_seed() -> None:
    dev, _, _ = report(seeds=set())
    assert dev.mfa_method == ("typed",)
    assert dev.authenticators == 0


def test_unused_key_pair_has_no_method() -> None:
    record = RecordInfo(RecordKind.KEY_PAIR, "spare", days_ago(1), mask_key(DEV_KEY))
    [row] = build_report(
        [record], last_used={}, fido2=FIDO2, profiles=PROFILES, seeds=set(), now=NOW
    )
    assert row.mfa_method == () and row.profiles == ()


def test_csv_header_and_rows() -> None:
    text = to_csv(report())
    lines = text.splitlines()
    assert lines[0] == (
        "name,kind,access_key_id,created,last_rotated,last_used,age_days,mfa_method,"
        "rotation_due,profiles,authenticators,authenticator_last_used"
    )
    assert lines[1] == (
        "dev,iam_user,AKIA************0001,2025-12-31T12:00:00Z,2025-12-31T12:00:00Z,"
        "2026-03-31T17:30:00Z,91,touch;seed,true,dev;dev-admin,2,2026-03-30T08:00:00Z"
    )
    assert lines[2] == (
        "ops,iam_user,AKIA************0002,2026-01-02T12:00:00Z,N/A,N/A,89,typed,false,ops,0,N/A"
    )
    assert len(list(csv.reader(io.StringIO(text)))) == 4


def test_json_shape() -> None:
    data = json.loads(to_json(report()))
    assert [list(row) for row in data] == [list(COLUMNS)] * 3
    dev = data[0]
    assert dev["mfa_method"] == ["touch", "seed"]
    assert dev["profiles"] == ["dev", "dev-admin"]
    assert dev["rotation_due"] is True and dev["age_days"] == 91
    assert dev["last_used"] == "2026-03-31T17:30:00Z"
    assert data[1]["last_used"] is None and data[1]["last_rotated"] is None
    assert data[2]["kind"] == "root"


def test_only_masked_key_ids_in_output() -> None:
    rows = report()
    out = to_csv(rows) + to_json(rows)
    for key in (DEV_KEY, OPS_KEY, ROOT_KEY):
        assert key not in out
        assert mask_key(key) in out


def _audit(path: Path, clock: FakeClock, *, max_bytes: int = 1 << 20) -> AuditLog:
    key = b"k" * 32
    return AuditLog(
        path, lambda d: hmac.new(key, d, hashlib.sha256).digest(), clock, max_bytes=max_bytes
    )


def test_last_used_reads_release_events_across_rotated_files(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    clock = FakeClock(datetime(2026, 3, 1, tzinfo=UTC))
    log = _audit(path, clock, max_bytes=600)
    log.record("release", {"profile": "dev", "action": "credential_process"})
    clock.advance(60)
    log.record("release", {"profile": "ops", "action": "credential_process"})
    clock.advance(60)
    log.record("request", {"profile": "dev", "action": "credential_process"})
    log.record("release", {"profile": "dev", "action": "credential_process"})
    clock.advance(3600)
    log.record("release", {"profile": "dev", "action": "exec"})
    clock.advance(60)
    log.record("approval_denied", {"profile": "ops"})
    assert len(list(tmp_path.glob("audit.log.[0-9]*"))) >= 2  # the log was rotated

    assert last_used_from_audit(path) == {
        "dev": datetime(2026, 3, 1, 1, 2, tzinfo=UTC),
        "ops": datetime(2026, 3, 1, 0, 1, tzinfo=UTC),
    }


def test_last_used_skips_what_it_cannot_read(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    good = {"event": "release", "profile": "dev", "time": "2026-03-01T10:00:00.000000Z"}
    lines = [
        json.dumps(good),
        "not json",
        "[1, 2]",
        json.dumps({"event": "release", "profile": "ops"}),
        json.dumps({"event": "release", "profile": "ops", "time": "yesterday"}),
        json.dumps({"event": "release", "profile": "ops", "time": "2026-03-02T10:00:00"}),
        json.dumps({"event": "release", "profile": 7, "time": "2026-03-02T10:00:00Z"}),
        '{"event": "release", "profile": "dev", "ti',
    ]
    path.write_text("\n".join(lines))
    assert last_used_from_audit(path) == {"dev": datetime(2026, 3, 1, 10, 0, tzinfo=UTC)}
    assert last_used_from_audit(tmp_path / "missing.log") == {}


def test_last_rotated_counts_only_stored_rotations(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    clock = FakeClock(datetime(2026, 3, 1, tzinfo=UTC))
    log = _audit(path, clock)
    log.record("rotation_step", {"name": "dev", "step": "store", "outcome": "ok"})
    clock.advance(86400)
    log.record("rotation_step", {"name": "dev", "step": "store", "outcome": "STORE_ERROR"})
    log.record("rotation_step", {"name": "ops", "step": "create", "outcome": "ok"})
    assert last_rotated_from_audit(path) == {"dev": datetime(2026, 3, 1, tzinfo=UTC)}


def test_last_used_counts_break_glass_reads(tmp_path: Path) -> None:
    """Root keys are used only through break-glass: each session read is a use."""
    path = tmp_path / "audit.log"
    clock = FakeClock(datetime(2026, 3, 1, tzinfo=UTC))
    log = _audit(path, clock)
    log.record("release", {"profile": "root", "action": "credential_process"})
    for _ in range(2):
        clock.advance(60)
        log.record("breakglass_requested", {"profile": "root", "reason": "MFA lost"})
        log.record("breakglass_read", {"profile": "root", "grant": "g"})
    clock.advance(60)
    log.record("breakglass_refused", {"profile": "root", "outcome": "MFA_REJECTED"})
    assert last_used_from_audit(path) == {"root": datetime(2026, 3, 1, 0, 2, tzinfo=UTC)}


def test_the_rotation_threshold_is_a_setting() -> None:
    from vaultd.settings import ReportSettings, Settings

    assert ReportSettings().rotation_days == 90
    assert Settings(report={"rotation_days": 30}).report.rotation_days == 30
    for bad in (0, 3651, "soon"):
        with pytest.raises(ValueError, match="rotation_days"):
            Settings(report={"rotation_days": bad})
