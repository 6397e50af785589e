"""`vaultd status [--json]`: profiles, session expiry and pending approvals."""

from __future__ import annotations

import argparse
import json

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
    status = client().request("status")
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(f"vaultd pid {status['pid']}: {'SEALED' if status['sealed'] else 'unsealed'}")
    profiles = status["profiles"]
    assert isinstance(profiles, list)  # noqa: S101 - protocol guarantees a list
    for p in profiles:
        left = p["seconds_left"]
        state = f"session {hms(left)} left" if isinstance(left, int) else "no session"
        print(terminal_safe(f"  {p['name']:<24} {p['kind']:<8} {p['approval']:<14} {state}"))
    approvals = status["approvals"]
    assert isinstance(approvals, list)  # noqa: S101
    for a in approvals:
        line = f"  pending approval {a['id']} for {a['profile']} (expires {a['expires_at']})"
        print(terminal_safe(line))
    return 0
