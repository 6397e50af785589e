"""The credential report: one row per stored key pair, after IAM's credential report.

:func:`build_report` is pure; the facts it needs from the audit log (last use, last rotation)
come in through the :class:`AuditFacts` port (:mod:`vaultd.store.audit_facts` reads them).
Only masked key ids appear in a row; nothing secret is read or written here.  ``created`` and
``age_days`` count from when vaultd stored the key (the record's header), not from IAM's
CreateDate: reading that (ListAccessKeys) would need an MFA session of the key itself.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from vaultd.core.model import ApprovalMethod, Profile, RecordInfo, RecordKind, utc
from vaultd.core.records import seed_record_name
from vaultd.errors import BadRequest

COLUMNS = (
    "name",
    "kind",
    "access_key_id",
    "created",
    "last_rotated",
    "last_used",
    "age_days",
    "mfa_method",
    "rotation_due",
    "profiles",
    "authenticators",
    "authenticator_last_used",
)
METHODS = ("touch", "seed", "typed", "none")
"""MFA methods, strongest first: a FIDO2 touch (code from the sealed seed), a code from the
sealed seed behind another gate, a code the user types, no MFA."""
_TOUCH = frozenset({ApprovalMethod.TOUCH, ApprovalMethod.TOUCH_OR_CODE})


class AuditFacts(Protocol):
    """What the report needs from the audit log (read tolerantly: the report informs)."""

    def last_used(self) -> Mapping[str, datetime]:
        """Latest release time per profile."""
        ...

    def last_rotated(self) -> Mapping[str, datetime]:
        """Latest successful rotation per key-pair name."""
        ...


class Authenticator(Protocol):
    """The public facts of an enrolled FIDO2 credential the report shows."""

    @property
    def name(self) -> str: ...
    @property
    def last_used(self) -> datetime | None: ...


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One stored key pair; ``access_key_id`` is masked."""

    name: str
    kind: str
    access_key_id: str
    created: datetime
    last_rotated: datetime | None
    last_used: datetime | None
    age_days: int
    mfa_method: tuple[str, ...]
    rotation_due: bool
    profiles: tuple[str, ...]
    authenticators: int
    authenticator_last_used: datetime | None


def build_report(
    records: list[RecordInfo],
    *,
    last_used: Mapping[str, datetime],
    fido2: Collection[Authenticator],
    profiles: Mapping[str, Profile],
    seeds: Collection[str],
    now: datetime,
    rotation_days: int = 90,
    last_rotated: Mapping[str, datetime] | None = None,
) -> list[ReportRow]:
    """One row per key-pair record, sorted by name.

    ``last_used`` is keyed by profile (:meth:`AuditFacts.last_used`); a key pair's last use is the
    latest of the profiles that use it (directly or as a role's source).  ``seeds`` holds the
    names of the stored TOTP seed records.  ``last_rotated`` is keyed by record name
    (:meth:`AuditFacts.last_rotated`).  A key is due for rotation once it is older than
    ``rotation_days``; ``authenticators`` counts the FIDO2 credentials that can release it
    (those of touch profiles).
    """
    rotated = last_rotated or {}
    now = utc(now)
    rows = []
    for info in sorted(records, key=lambda r: r.name):
        if info.kind is not RecordKind.KEY_PAIR:
            continue
        users = _users(info.name, profiles)
        methods = {_method(p, profiles, seeds) for p in users}
        touch = "touch" in methods
        age = now - utc(info.created)
        rows.append(
            ReportRow(
                name=info.name,
                kind="root" if info.root else "iam_user",
                access_key_id=info.masked_id,
                created=utc(info.created),
                last_rotated=_opt(rotated.get(info.name)),
                last_used=_latest(last_used.get(p.name) for p in users),
                age_days=max(age.days, 0),
                mfa_method=tuple(m for m in METHODS if m in methods),
                rotation_due=age > timedelta(days=rotation_days),
                profiles=tuple(p.name for p in users),
                authenticators=len(fido2) if touch else 0,
                authenticator_last_used=_latest(a.last_used for a in fido2) if touch else None,
            )
        )
    return rows


def _users(key_pair: str, profiles: Mapping[str, Profile]) -> list[Profile]:
    """Profiles whose sessions come from ``key_pair``, sorted by name."""
    out = []
    for p in profiles.values():
        source = profiles.get(p.source_profile) if p.source_profile else p
        if source is not None and source.credentials == key_pair:
            out.append(p)
    return sorted(out, key=lambda p: p.name)


def _method(profile: Profile, profiles: Mapping[str, Profile], seeds: Collection[str]) -> str:
    source = profiles.get(profile.source_profile) if profile.source_profile else None
    serial = profile.mfa_serial or (source.mfa_serial if source else None)
    if serial is None:
        return "none"
    try:
        seeded = seed_record_name(serial) in seeds
    except BadRequest:
        seeded = False
    if seeded and profile.approval in _TOUCH:
        return "touch"
    return "seed" if seeded else "typed"


def _opt(dt: datetime | None) -> datetime | None:
    return None if dt is None else utc(dt)


def _latest(times: Iterable[datetime | None]) -> datetime | None:
    present = [utc(t) for t in times if t is not None]
    return max(present) if present else None


def _time(dt: datetime | None) -> str | None:
    return None if dt is None else dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _fields(row: ReportRow) -> dict[str, object]:
    return {
        "name": row.name,
        "kind": row.kind,
        "access_key_id": row.access_key_id,
        "created": _time(row.created),
        "last_rotated": _time(row.last_rotated),
        "last_used": _time(row.last_used),
        "age_days": row.age_days,
        "mfa_method": list(row.mfa_method),
        "rotation_due": row.rotation_due,
        "profiles": list(row.profiles),
        "authenticators": row.authenticators,
        "authenticator_last_used": _time(row.authenticator_last_used),
    }


def _cell(value: object) -> str:
    if value is None:
        return "N/A"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ";".join(str(v) for v in value) or "N/A"
    return str(value)


def to_csv(rows: list[ReportRow]) -> str:
    """CSV with a snake_case header (:data:`COLUMNS`); missing values are ``N/A``, lists ``;``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        fields = _fields(row)
        writer.writerow([_cell(fields[c]) for c in COLUMNS])
    return out.getvalue()


def to_json(rows: list[ReportRow]) -> str:
    """A JSON array of objects keyed by :data:`COLUMNS` (times RFC 3339 UTC or null)."""
    return json.dumps([_fields(r) for r in rows], indent=2)


def credential_report(
    records: list[RecordInfo],
    *,
    seeds: Collection[str],
    fido2: Collection[Authenticator],
    profiles: Mapping[str, Profile],
    facts: AuditFacts,
    now: datetime,
    rotation_days: int,
) -> dict[str, object]:
    """The ``report`` reply: rows (JSON values) and the same rows as CSV; a key older than
    ``rotation_days`` (setting ``report.rotation_days``) is due for rotation."""
    rows = build_report(
        records,
        last_used=facts.last_used(),
        fido2=fido2,
        profiles=profiles,
        seeds=seeds,
        now=now,
        rotation_days=rotation_days,
        last_rotated=facts.last_rotated(),
    )
    return {"rows": json.loads(to_json(rows)), "csv": to_csv(rows)}
