"""`vaultd remove NAME`: delete a stored key pair."""

from __future__ import annotations

import argparse

from vaultd.commands._args import Subparsers, settings


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("remove", help="delete a stored key pair")
    p.add_argument("name")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vaultd.app import opened_vault
    from vaultd.core.model import RecordKind

    with opened_vault(settings()) as vault:
        vault.store.remove(RecordKind.KEY_PAIR, args.name)
    print(f"removed {args.name!r}")
    return 0
