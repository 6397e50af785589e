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


def run_report(args: argparse.Namespace) -> int:
    reply = client().request("report")
    if args.csv:
        print(reply["csv"], end="")
        return 0
    rows = reply["rows"]
    assert isinstance(rows, list)  # noqa: S101 - protocol guarantees a list
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        due = "ROTATE" if row.get("rotation_due") else "ok"
        print(
            f"{row['name']:<20} {row['kind']:<9} {row['access_key_id']:<22} "
            f"age {row.get('age_days')}d  last used {row.get('last_used') or 'never'}  {due}"
        )
    return 0
