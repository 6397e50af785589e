"""`vaultd rotate NAME` and `vaultd report`: key rotation and the credential report."""

from __future__ import annotations

import argparse
import json
import sys

from vaultd.commands._args import Subparsers
from vaultd.commands._client import client


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "rotate",
        help="replace a stored access key with a new one (inside the daemon, with MFA)",
        description="CreateAccessKey, verify the new key, store it, then DeleteAccessKey the "
        "old one. A working key stays stored whatever step fails.",
    )
    p.add_argument("name", help="the stored key pair")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_rotate)
    r = sub.add_parser("report", help="the credential report: ages, last use, rotation due")
    fmt = r.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true")
    fmt.add_argument("--json", action="store_true")
    r.set_defaults(func=run_report)


def _prompt_on_tty(event: object) -> None:
    """Show a pending approval so the user knows to answer it (`vaultd approve ID`)."""

    fields = getattr(event, "fields", {})
    print(
        f"vaultd: approval {fields.get('id')} pending for {fields.get('profile')}: "
        f"run `vaultd approve {fields.get('id')} --code CODE`",
        file=sys.stderr,
    )


def run_rotate(args: argparse.Namespace) -> int:
    result = client(timeout=180).request("rotate", on_event=_prompt_on_tty, name=args.name)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(result["message"])
    return 0 if result.get("old_key_deleted") else 1


REPORT_HEADER = ("NAME", "KIND", "ACCESS KEY", "AGE", "AGE FROM", "LAST USED", "ROTATION")
"""The text table's columns.  AGE FROM says which date the age counts from: ``stored``, when
vaultd stored the key (not IAM's CreateDate)."""


def run_report(args: argparse.Namespace) -> int:
    import json

    from vaultd.commands._table import columns
    from vaultd.core.termtext import terminal_safe

    reply = client().request("report")
    if args.csv:
        print(reply["csv"], end="")
        return 0
    rows = reply["rows"]
    assert isinstance(rows, list)  # noqa: S101 - protocol guarantees a list
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no stored key pairs: add one with `vaultd add NAME`")
        return 0
    for line in columns(REPORT_HEADER, (_report_cells(row) for row in rows)):
        print(terminal_safe(line))
    return 0


def _report_cells(row: dict[str, object]) -> tuple[str, ...]:
    return (
        str(row["name"]),
        str(row["kind"]),
        str(row["access_key_id"]),
        f"{row['age_days']}d",
        "stored",
        str(row.get("last_used") or "never"),
        "DUE" if row.get("rotation_due") else "ok",
    )
