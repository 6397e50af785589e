"""`vaultd status [--json]`: profiles, session expiry and pending approvals."""

from __future__ import annotations

import argparse

from vaultd.commands._args import Subparsers
from vaultd.commands._client import client


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("status", help="show sessions and pending approvals")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def hms(seconds: int) -> str:
    """``seconds`` as H:MM:SS."""
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def run(args: argparse.Namespace) -> int:
    import json

    from vaultd.core.termtext import terminal_safe
    from vaultd.settings import config_digest

    status = client().request("status")
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(f"vaultd pid {status['pid']}: {'SEALED' if status['sealed'] else 'unsealed'}")
    if status["config_digest"] != config_digest():
        print(
            "warning: the config file changed since the daemon loaded it; reload it with "
            f"`kill -HUP {status['pid']}` (or `systemctl --user reload vaultd`)"
        )
    profiles, cooldowns = status["profiles"], status["cooldowns"]
    assert isinstance(profiles, list) and isinstance(cooldowns, dict)  # noqa: S101 - protocol
    for p in profiles:
        left = p["seconds_left"]
        state = f"session {hms(left)} left" if isinstance(left, int) else "no session"
        if p["name"] in cooldowns:
            state += f"; denied, cooldown {cooldowns[p['name']]} s (--clear-cooldown ends it)"
        print(terminal_safe(f"  {p['name']:<24} {p['kind']:<8} {p['approval']:<14} {state}"))
    approvals, in_progress = status["approvals"], status["in_progress"]
    assert isinstance(approvals, list) and isinstance(in_progress, list)  # noqa: S101
    for a in approvals:
        line = f"  pending approval {a['id']} for {a['profile']} (expires {a['expires_at']})"
        print(terminal_safe(line))
    for r in in_progress:
        print(terminal_safe(f"  approval {r['id']} for {r['profile']}: {r['message']}"))
    return 0
