"""`vaultd list [--json]`: names, kinds, masked key ids, creation times; never secrets. The text
listing has headers and shows a TOTP seed by its MFA device's serial (its record name is a hash
of it) when a profile names that device.  When the daemon runs unsealed it lists the records
(the token PIN is not asked again), else the token is opened.  When the daemon runs, the listing
then shows each profile's session and its time left, and the active break-glass grants (when it
does not, stderr says so).

These come from the records' plaintext headers, read without opening (authenticating) each
record, so anyone who can write the store could have changed them: the listing says so, and
every field is made terminal-safe (docs/threat-model.md T35).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable

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

    config = settings()
    rows = _rows_from_daemon()
    if rows is None:
        rows = _rows_from_token()
    serials = _serials_by_seed_name(p.mfa_serial for p in config.profiles.values())
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    _print_records(rows, serials)
    _print_daemon()
    return 0


def _rows_from_daemon() -> list[dict[str, str]] | None:
    """The records as the running, unsealed daemon lists them (no PIN asked), else None."""
    from vaultd.errors import Sealed

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


def _serials_by_seed_name(serials: Iterable[str | None]) -> dict[str, str]:
    """Seed record name (a hash of the serial) to the MFA device serial, for the configured
    devices; a seed of a device no profile names keeps its record name."""
    from vaultd.core.records import seed_record_name

    return {seed_record_name(s): s for s in set(serials) if s is not None}


def _print_records(rows: list[dict[str, str]], serials: dict[str, str]) -> None:
    from vaultd.commands._table import columns

    if not rows:
        print("no records: add one with `vaultd add NAME`")
        return
    shown = [
        (serials.get(r["name"], r["name"]) if r["kind"] == "totp_seed" else r["name"],
         r["kind"], r["key_id"] or "-", r["created"])
        for r in rows
    ]  # fmt: skip
    header = ("NAME (MFA DEVICE FOR SEEDS)", "KIND", "KEY ID", "STORED")
    for line in columns(header, shown):
        print(terminal_safe(line))
    print(UNVERIFIED_NOTE)


def _print_daemon() -> None:
    """Each profile's session and the break-glass grants, from a running daemon (a short wait
    at most)."""
    from vaultd.commands._table import columns
    from vaultd.core.termtext import terminal_safe
    from vaultd.errors import DaemonNotRunning

    try:
        status = client(timeout=SESSIONS_TIMEOUT).request("status")
    except DaemonNotRunning:
        print("vaultd: not running, so no sessions are shown", file=sys.stderr)
        return
    profiles, grants = status["profiles"], status["grants"]
    assert isinstance(profiles, list) and isinstance(grants, list)  # noqa: S101 - schema
    print("\nsessions:" if profiles else "\nsessions: no profiles configured")
    rows = [
        (p["name"], f"{hms(p['seconds_left'])} left" if isinstance(p["seconds_left"], int)
         else "no session")
        for p in profiles
    ]  # fmt: skip
    lines = columns(("PROFILE", "SESSION"), rows) if rows else []
    if grants:
        grant_rows = [(g["id"], g["profile"], g["expires_at"], g["reason"]) for g in grants]
        lines += ["", *columns(("BREAK-GLASS GRANT", "PROFILE", "EXPIRES", "REASON"), grant_rows)]
    for line in lines:
        print(terminal_safe(line))
