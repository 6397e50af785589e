"""`vaultd remove NAME`: delete a stored key pair."""

from __future__ import annotations

import argparse
import sys

from vaultd.commands._args import Subparsers, settings
from vaultd.core.model import RecordKind
from vaultd.errors import NotConfirmed


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("remove", help="delete a stored key pair")
    p.add_argument("name")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation (scripts)")
    p.set_defaults(func=run)


def _confirmed(name: str) -> bool:
    """On a terminal, whether the person typed the record's name back."""
    try:
        answer = input(f"remove the key pair {name!r} for good? type its name to confirm: ")
    except EOFError:
        return False
    return answer.strip() == name


def run(args: argparse.Namespace) -> int:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.app import opened_vault

    if not args.yes:
        if not sys.stdin.isatty():
            raise NotConfirmed(f"not removing {args.name!r}: confirm on a terminal or pass --yes")
        if not _confirmed(args.name):
            raise NotConfirmed(f"not removing {args.name!r}: the name typed did not match")
    with opened_vault(settings()) as vault:
        vault.store.remove(RecordKind.KEY_PAIR, args.name)
        vault.audit("record_removed", kind="key_pair", name=args.name)
    print(f"removed {args.name!r}")
    return 0
