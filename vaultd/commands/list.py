"""`vaultd list [--json]`: names, kinds, masked key ids, creation times; never secrets. When the
daemon runs, the text listing then shows each profile's session and its time left (when it does
not, stderr says so).

These come from the records' plaintext headers, read without opening (authenticating) each
record, so anyone who can write the store could have changed them: the listing says so, and
every field is made terminal-safe (docs/threat-model.md T35).
"""

from __future__ import annotations

import argparse
import json
import sys

from vaultd.commands._args import Subparsers, settings
from vaultd.commands._client import client
from vaultd.commands.status import hms
from vaultd.core.termtext import terminal_safe
from vaultd.errors import DaemonNotRunning

SESSIONS_TIMEOUT = 3.0
"""Seconds `vaultd list` waits for the daemon's status."""

UNVERIFIED_NOTE = (
    "(unverified: read from the record headers without opening the records; a record that "
    "was tampered with fails when it is used)"
)


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "list",
        help="list stored records (no secrets) and, when the daemon runs, each profile's session",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="machine-readable records only (sessions: `vaultd status --json`)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.app import opened_vault

    with opened_vault(settings()) as vault:
        infos = vault.store.list()
    rows = [
        {
            "name": info.name,
            "kind": "root_key_pair" if info.root else info.kind.value,
            "key_id": info.masked_id,
            "created": info.created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        for info in sorted(infos, key=lambda i: (i.kind.value, i.name))
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no records: add one with `vaultd add NAME`")
    else:
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            line = f"{r['name']:<{width}}  {r['kind']:<16}  {r['key_id']:<20}  {r['created']}"
            print(terminal_safe(line))
        print(UNVERIFIED_NOTE)
    if not args.json:
        _print_sessions()
    return 0


def _print_sessions() -> None:
    """Each profile's session and time left, from a running daemon (a short wait at most)."""

    try:
        status = client(timeout=SESSIONS_TIMEOUT).request("status")
    except DaemonNotRunning:
        print("vaultd: not running, so no sessions are shown", file=sys.stderr)
        return
    profiles = status["profiles"]
    assert isinstance(profiles, list)  # noqa: S101 - the reply schema guarantees a list
    print("sessions:" if profiles else "sessions: no profiles configured")
    for p in profiles:
        left = p["seconds_left"]
        state = f"{hms(left)} left" if isinstance(left, int) else "no session"
        print(terminal_safe(f"  {p['name']:<24} {state}"))
