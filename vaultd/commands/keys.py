"""`vaultd keys list|add --recovery|remove ID|recover`: who can open the store (issue 14).

A recovery key is printed once, here, and never stored; ``keys recover`` reads it hidden from
the terminal or from stdin, never from argv or the environment.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from vaultd.commands._args import Subparsers, settings

if TYPE_CHECKING:
    from vaultd.keys.recovery import RecoveryKey


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("keys", help="list, add or remove the keys that open the store; recover")
    actions = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    actions.add_parser("list", help="the token and recovery keys").set_defaults(func=run_list)
    a = actions.add_parser("add", help="enrol a new recovery key, printed once")
    a.add_argument("--recovery", action="store_true", required=True, help="a recovery key")
    a.set_defaults(func=run_add)
    r = actions.add_parser("remove", help="stop sealing records to a recovery key")
    r.add_argument("id", help="the recovery key's id, as `vaultd keys list` shows it")
    r.set_defaults(func=run_remove)
    c = actions.add_parser(
        "recover", help="token lost: open with a recovery key, re-seal to the configured token"
    )
    c.set_defaults(func=run_recover)


def _kind(rid: str) -> str:
    from vaultd.keys.recovery import KIND

    return "recovery" if rid.startswith(f"{KIND}:") else "token"


def run_list(args: argparse.Namespace) -> int:
    from vaultd.app import opened_vault

    with opened_vault(settings()) as vault:
        ids = vault.store.recipients()
    for rid in ids:
        print(f"{_kind(rid):<9} {rid}")
    return 0


def show_recovery_key(key: RecoveryKey) -> None:
    """Print a new recovery key once, with what to do with it."""
    print(
        "\nRECOVERY KEY (shown once, never stored; write it down and keep it offline):\n\n"
        f"    {key.to_words()}\n\n"
        f"id {key.id}. Whoever holds these words can open the store file without the token.\n"
        "If the token is lost: `vaultd keys recover` with a new token configured.\n"
    )


def run_add(args: argparse.Namespace) -> int:
    from vaultd.app import opened_vault
    from vaultd.keys import recovery

    key = recovery.generate()
    with opened_vault(settings()) as vault:
        backups = vault.store.snapshot().backups
        vault.store.reseal([*backups, key.backup()])
    show_recovery_key(key)
    return 0


def run_remove(args: argparse.Namespace) -> int:
    from vaultd.app import opened_vault
    from vaultd.errors import BadRequest

    with opened_vault(settings()) as vault:
        ids = vault.store.recipients()
        if args.id not in ids:
            raise BadRequest(f"no key {args.id[:80]!r} opens this store; see `vaultd keys list`")
        if _kind(args.id) == "token":
            raise BadRequest(
                f"{args.id!r} is the vault's token, the only key that opens the store day to "
                "day: it cannot be removed (to replace a lost one, `vaultd keys recover`)"
            )
        backups = vault.store.snapshot().backups
        vault.store.reseal([b for b in backups if b.id != args.id])
    print(f"removed {args.id}: records are no longer sealed to it")
    return 0


def read_recovery_key() -> RecoveryKey:
    """The recovery key typed without echo on a terminal, or stdin's first line."""
    import getpass

    from vaultd.keys.recovery import from_words

    if sys.stdin.isatty():
        text = getpass.getpass("recovery key (hidden): ")
    else:
        text = sys.stdin.readline()
    return from_words(text)


def run_recover(args: argparse.Namespace) -> int:
    from vaultd.app import opened_vault, recovery_store

    cfg = settings()
    key = read_recovery_key()
    snap = recovery_store(cfg, key).snapshot()  # checks the store by the key's own tag
    with opened_vault(cfg, create_key=True) as vault:
        vault.store.adopt(snap, snap.backups)
        token_id = vault.token.key_id
    print(
        f"recovered {len(snap.records)} records: the store is now sealed to token {token_id} "
        f"and {len(snap.backups)} recovery key(s)"
    )
    return 0
