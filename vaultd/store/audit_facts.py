"""The audit facts the credential report shows: last use (releases and break-glass reads) and
last rotation, per name.

Read tolerantly (rotated files too; anything unreadable is skipped): the report is
informational, and `vaultd audit verify` is the check.  The ``AuditFacts`` port of
:mod:`vaultd.core.report`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from vaultd.core.model import utc
from vaultd.store.audit import chain_files


class AuditFactsReader:
    """The ``AuditFacts`` of the audit log at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def last_used(self) -> dict[str, datetime]:
        return last_used_from_audit(self.path)

    def last_rotated(self) -> dict[str, datetime]:
        return last_rotated_from_audit(self.path)


def _events(path: Path, event: str) -> Iterator[tuple[dict[str, object], datetime]]:
    """(record, time) of every well-formed ``event`` record; anything unreadable is skipped."""
    for file in chain_files(path):
        try:
            with open(file, "rb") as fh:
                for line in fh:
                    found = _parse(line, event)
                    if found is not None:
                        yield found
        except OSError:
            continue


def _parse(line: bytes, event: str) -> tuple[dict[str, object], datetime] | None:
    try:
        obj = json.loads(line)
        if not isinstance(obj, dict) or obj.get("event") != event:
            return None
        when = datetime.fromisoformat(str(obj["time"]))
    except (ValueError, KeyError, RecursionError):
        return None
    return (obj, utc(when)) if when.tzinfo is not None else None


def _latest_by(path: Path, event: str, key: str, **match: str) -> dict[str, datetime]:
    out: dict[str, datetime] = {}
    for obj, when in _events(path, event):
        name = obj.get(key)
        if isinstance(name, str) and all(obj.get(k) == v for k, v in match.items()):
            out[name] = max(when, out.get(name, when))
    return out


def last_used_from_audit(path: Path) -> dict[str, datetime]:
    """Latest use per profile in the audit log ``path`` (rotated files too): a ``release``, or
    a break-glass session read (``breakglass_read``: root keys are used only that way)."""
    used = _latest_by(path, "release", "profile")
    for name, when in _latest_by(path, "breakglass_read", "profile").items():
        used[name] = max(when, used.get(name, when))
    return used


def last_rotated_from_audit(path: Path) -> dict[str, datetime]:
    """Latest successful rotation (``rotation_step`` store ok) per key-pair name."""
    return _latest_by(path, "rotation_step", "name", step="store", outcome="ok")
