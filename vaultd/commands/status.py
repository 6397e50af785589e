"""`vaultd status [--json]`: profiles, session expiry and pending approvals."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence

from vaultd.commands._args import Subparsers
from vaultd.commands._client import client
from vaultd.core.termtext import terminal_safe


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("status", help="show sessions and pending approvals")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def hms(seconds: int) -> str:
    """``seconds`` as H:MM:SS."""
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def run(args: argparse.Namespace) -> int:
    import json

    status = client().request("status")
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    for line in status_lines(status):
        print(line)
    return 0


def stale_config(status: Mapping[str, object]) -> str:
    """What to do when the daemon runs with another config than the file holds now; "" when
    they match (``config_digest`` in the ``status`` reply)."""
    from vaultd.settings import config_digest

    if status["config_digest"] == config_digest():
        return ""
    return (
        "the config file changed since the daemon loaded it; reload it with "
        f"`kill -HUP {status['pid']}` (or `systemctl --user reload vaultd`)"
    )


def status_lines(status: dict[str, object]) -> list[str]:
    """The text form of a ``status`` reply: the seal and why, then headed tables of profiles,
    break-glass grants and pending approvals (every field terminal-safe)."""
    state = f"SEALED: {status['sealed_reason']}" if status["sealed"] else "unsealed"
    lines = [f"vaultd pid {status['pid']}: {state}"]
    stale = stale_config(status)
    if stale:
        lines.append(f"warning: {stale}")
    profiles, grants, approvals = status["profiles"], status["grants"], status["approvals"]
    cooldowns, in_progress = status["cooldowns"], status["in_progress"]
    assert isinstance(profiles, list) and isinstance(grants, list)  # noqa: S101 - schema
    assert isinstance(approvals, list) and isinstance(in_progress, list)  # noqa: S101 - schema
    assert isinstance(cooldowns, dict)  # noqa: S101 - schema
    profile_rows = [
        (p["name"], p["kind"], p["approval"], _session(p, cooldowns.get(p["name"])))
        for p in profiles
    ]
    grant_rows = [
        (g["id"], g["profile"], g["expires_at"], "yes" if g["read"] else "no", g["reason"])
        for g in grants
    ]
    approval_rows = [(a["id"], a["profile"], a["expires_at"]) for a in approvals]
    approval_rows += [(r["id"], r["profile"], r["message"]) for r in in_progress]
    lines += _table(("PROFILE", "KIND", "APPROVAL", "SESSION"), profile_rows, "no profiles")
    lines += _table(("GRANT", "PROFILE", "EXPIRES", "READ", "REASON"), grant_rows, "no grants")
    lines += _table(
        ("APPROVAL", "PROFILE", "EXPIRES OR STATE"), approval_rows, "no pending approvals"
    )
    return [terminal_safe(line) for line in lines]


def _session(profile: dict[str, object], cooldown: object) -> str:
    left = profile["seconds_left"]
    state = f"{hms(left)} left" if isinstance(left, int) else "no session"
    if isinstance(cooldown, int):
        state += f"; denied, cooldown {cooldown} s (--clear-cooldown ends it)"
    return state


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], empty: str) -> list[str]:
    """A blank line, then the headed table, or just ``empty`` without rows."""
    from vaultd.commands._table import columns

    return ["", *(columns(header, rows) if rows else [empty])]
