"""`vaultd approvals`, `vaultd approve ID` (the code typed without echo, or on stdin),
`vaultd deny ID`."""

from __future__ import annotations

import argparse

from vaultd.commands._args import Subparsers
from vaultd.commands._client import client


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("approvals", help="list pending approvals")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_list)
    p = sub.add_parser(
        "approve",
        help="approve a pending request with your MFA code (typed without echo, or on stdin)",
    )
    p.add_argument("id")
    p.add_argument(
        "--code",
        help="DEPRECATED: argv is readable by every user (ps); type the code or pipe it on stdin",
    )
    p.set_defaults(func=run_approve)
    p = sub.add_parser("deny", help="deny a pending request")
    p.add_argument("id")
    p.set_defaults(func=run_deny)


def run_list(args: argparse.Namespace) -> int:
    import json

    from vaultd.core.termtext import terminal_safe

    approvals = client().request("approvals")["approvals"]
    assert isinstance(approvals, list)  # noqa: S101 - protocol guarantees a list
    if args.json:
        print(json.dumps(approvals, indent=2))
        return 0
    if not approvals:
        print("no pending approvals")
    for a in approvals:
        who = a["requested_by"]
        program = who["parent_command"] or who["executable"]
        line = (
            f"{a['id']}  {a['profile']}  by pid {who['pid']} {program}"
            f"  (cwd {who['cwd'] or '?'})  expires {a['expires_at']}"
        )
        print(terminal_safe(line))
    return 0


def read_code(deprecated_arg: str | None) -> str:
    """The MFA code: typed on the terminal without echo, else the first line of stdin; the
    deprecated ``--code`` value still works, with a warning."""
    import sys

    if deprecated_arg is not None:
        print(
            "vaultd: WARNING: --code is deprecated: any user can read it in the process list; "
            "type the code when asked, or pipe it on stdin",
            file=sys.stderr,
        )
        return deprecated_arg
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass("MFA code: ").strip()
    return sys.stdin.readline(64).strip()


def run_approve(args: argparse.Namespace) -> int:
    code = read_code(args.code)
    client().request("approve", id=args.id, code=code)
    print(f"approved {args.id}")
    return 0


def run_deny(args: argparse.Namespace) -> int:
    client().request("deny", id=args.id)
    print(f"denied {args.id}")
    return 0
