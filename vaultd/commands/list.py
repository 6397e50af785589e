"""`vaultd list [--json]`: names, kinds, masked key ids, creation times; never secrets. When the
daemon runs unsealed it lists them (the token PIN is not asked again), else the token is opened;
the text listing then shows each profile's session and its time left (when the daemon does not
run, stderr says so).

These come from the records' plaintext headers, read without opening (authenticating) each
record, so anyone who can write the store could have changed them: the listing says so, and
every field is made terminal-safe (docs/threat-model.md T35).
"""

from __future__ import annotations

import argparse
import sys

from vaultd.commands._args import Subparsers, settings

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
    import json

    from vaultd.core.termtext import terminal_safe

    rows = _rows_from_daemon()
    if rows is None:
        rows = _rows_from_token()
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


def _rows_from_daemon() -> list[dict[str, str]] | None:
    """The records as the running, unsealed daemon lists them (no PIN asked), else None."""
    from vaultd.commands._client import client
    from vaultd.errors import DaemonNotRunning, Sealed

    try:
        reply = client(timeout=SESSIONS_TIMEOUT).request("records")
    except (DaemonNotRunning, Sealed):
        return None
    rows = reply["records"]
    assert isinstance(rows, list)  # noqa: S101 - the reply schema guarantees a list
    return rows


def _rows_from_token() -> list[dict[str, str]]:
    """The records read by opening the token (its PIN from ``pkcs11.pin_source``)."""
    from vaultd.app import opened_vault
    from vaultd.core.model import record_rows

    with opened_vault(settings()) as vault:
        return record_rows(vault.store.list())


def _print_sessions() -> None:
    """Each profile's session and time left, from a running daemon (a short wait at most)."""
    from vaultd.commands._client import client
    from vaultd.commands.status import hms
    from vaultd.core.termtext import terminal_safe
    from vaultd.errors import DaemonNotRunning

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
