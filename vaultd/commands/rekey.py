"""`vaultd rekey`: re-seal every record to the token and the store's recovery keys.

One atomic replacement of the store file: killed at any point, the store opens as the old or
the new generation, and running it again completes it.
"""

from __future__ import annotations

import argparse

from vaultd.commands._args import Subparsers, settings


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("rekey", help="re-seal every record to the token and recovery keys")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vaultd.app import opened_vault

    with opened_vault(settings()) as vault:
        vault.store.reseal()
        count = len(vault.store.list())
        openers = len(vault.store.recipients())
    print(f"re-sealed {count} records to {openers} key(s) at a new store generation")
    return 0
