"""`vaultd audit verify` (hash chain and token MACs) and `vaultd audit tail`."""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from vaultd.commands._args import Subparsers, settings
from vaultd.core.termtext import terminal_safe
from vaultd.errors import AuditTampered, ConfigError


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("audit", help="check or read the audit log")
    actions = p.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    v = actions.add_parser(
        "verify",
        help="check every record's hash chain and token MAC, rotated files included",
        description="Logs in to the token to check the MACs. Prints `OK: N records, chain "
        "intact`, or names the first bad record (file, line, seq, what is wrong) and exits "
        "non-zero.",
    )
    v.set_defaults(func=run_verify)
    t = actions.add_parser(
        "tail", help="show the last records (no token needed; nothing is verified)"
    )
    t.add_argument("-n", type=int, default=10, metavar="N", help="records to show (default 10)")
    t.add_argument("--follow", "-f", action="store_true", help="keep printing new records")
    t.add_argument("--json", action="store_true", help="print the raw JSON lines")
    t.set_defaults(func=run_tail)


def run_verify(args: argparse.Namespace) -> int:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.app import opened_vault
    from vaultd.store.audit import verify

    config = settings()
    with opened_vault(config) as vault:
        count = verify(config.audit_path, vault.token.mac_verify)
    print(f"OK: {count} records, chain intact")
    return 0


def run_tail(args: argparse.Namespace) -> int:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.store.audit import follow, tail

    if args.n < 0:
        raise ConfigError("-n must be 0 or more")
    path = settings().audit_path
    lines: Iterable[bytes] = follow(path, backlog=args.n) if args.follow else tail(path, args.n)
    for line in lines:
        text = line.decode("utf-8", "replace") if args.json else describe(line)
        print(terminal_safe(text), flush=True)
    return 0


def describe(line: bytes) -> str:
    """One human line for a record: time, event, profile, outcome, client pid and executable."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.store.audit import parse_line

    try:
        record = parse_line(line)
    except AuditTampered as exc:
        return f"?  unreadable record ({exc}): run `vaultd audit verify`"
    client = record.get("client")
    who = "-"
    if isinstance(client, dict):
        who = f"pid {client.get('pid', '?')} {client.get('executable') or '?'}"
    fields = (
        record["time"],
        record["event"],
        record.get("profile", "-"),
        record.get("outcome", "-"),
        who,
    )
    return "  ".join(terminal_safe(f) for f in fields)
