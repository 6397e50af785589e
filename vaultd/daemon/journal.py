"""The daemon log's account of approvals and issued sessions, read off the audit records.

Each audit record the service writes (never a secret: ``vaultd.ipc.replies.SECRET_FIELD_NAMES``)
that a person running the daemon wants to see becomes one INFO line once it is durable:
approvals opened, joined (by whom), answered (by whom), granted, denied (by whom) or failed,
and the sessions released after a fresh approval (profile, masked key id, expiry).  A cached
session served again is a DEBUG line, so a busy shell does not flood the journal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from vaultd.core.service import AuditSink
from vaultd.core.termtext import terminal_safe

log = logging.getLogger("vaultd.daemon")


def _who(fields: Mapping[str, object], key: str) -> str:
    client = fields.get(key)
    if not isinstance(client, Mapping):
        return "an unknown process"
    return f"pid {client.get('pid')} ({client.get('executable') or '?'})"


_LINES: Mapping[str, Callable[[Mapping[str, object]], str]] = {
    "approval_opened": lambda f: (
        f"approval {f.get('approval')} opened for profile {f.get('profile')} "
        f"({f.get('methods')}), asked by {_who(f, 'client')}"
    ),
    "approval_joined": lambda f: (
        f"approval {f.get('approval')} for profile {f.get('profile')} joined by {_who(f, 'client')}"
    ),
    "approval_answered": lambda f: (
        f"approval {f.get('approval')} for profile {f.get('profile')} answered by {_who(f, 'by')}"
    ),
    "approval_granted": lambda f: (
        f"approval {f.get('approval')} for profile {f.get('profile')} granted"
    ),
    "approval_denied": lambda f: (
        f"approval {f.get('approval')} for profile {f.get('profile')} denied by {_who(f, 'by')}"
    ),
    "approval_failed": lambda f: (
        f"approval {f.get('approval')} for profile {f.get('profile')} failed: {f.get('outcome')}"
    ),
    "cooldown_cleared": lambda f: f"the deny cooldown of profile {f.get('profile')} was ended",
}


class LoggedAudit:
    """An :class:`AuditSink` that also logs each durable record the daemon log should show."""

    def __init__(self, audit: AuditSink) -> None:
        self._audit = audit
        self._requested: set[str] = set()
        """Profiles with a request that missed the cache: their next release is a new session."""

    def record(self, event: str, fields: Mapping[str, object]) -> None:
        """Write through (blocking), then log."""
        self._audit.record(event, fields)
        self._log(event, fields)

    async def record_async(
        self, event: str, fields: Mapping[str, object], *, timeout: float
    ) -> None:
        """Write through, then log."""
        await self._audit.record_async(event, fields, timeout=timeout)
        self._log(event, fields)

    def _log(self, event: str, fields: Mapping[str, object]) -> None:
        profile = str(fields.get("profile"))
        if event == "request":
            self._requested.add(profile)
        elif event == "refused":
            self._requested.discard(profile)
        elif event == "release":
            fresh = profile in self._requested
            self._requested.discard(profile)
            level = logging.INFO if fresh else logging.DEBUG
            if not log.isEnabledFor(level):  # a cache hit: no line to build at the usual level
                return
            log.log(
                level,
                "%s",
                terminal_safe(
                    f"{'new' if fresh else 'cached'} session for profile {profile} "
                    f"(key {fields.get('session_key_id')}, expires {fields.get('expiration')}) "
                    f"released to {_who(fields, 'client')}"
                ),
            )
        elif event in _LINES:
            log.info("%s", terminal_safe(_LINES[event](fields)))
