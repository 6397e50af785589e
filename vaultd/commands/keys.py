"""`vaultd keys list|add --recovery|--token|remove ID|recover`: who opens the store (issue 14).

A recovery key is printed once, here, and never stored; ``keys recover`` reads it hidden from
the terminal or from stdin, never from argv or the environment.  A backup token is a second
PKCS#11 token's P-256 key; its PIN is read the same way.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from vaultd.commands._args import Subparsers, settings

if TYPE_CHECKING:
    from vaultd.keys.backup_token import BackupToken
    from vaultd.keys.recovery import RecoveryKey
    from vaultd.settings import Settings


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("keys", help="list, add or remove the keys that open the store; recover")
    actions = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    actions.add_parser("list", help="the token and recovery keys").set_defaults(func=run_list)
    a = actions.add_parser("add", help="enrol a recovery key (printed once) or a backup token")
    kind = a.add_mutually_exclusive_group(required=True)
    kind.add_argument("--recovery", action="store_true", help="a recovery key")
    kind.add_argument("--token", action="store_true", help="a second PKCS#11 token's P-256 key")
    _token_args(a)
    a.set_defaults(func=run_add)
    r = actions.add_parser("remove", help="stop sealing records to a recovery key or backup token")
    r.add_argument("id", help="the backup's id, as `vaultd keys list` shows it")
    r.set_defaults(func=run_remove)
    c = actions.add_parser(
        "recover", help="token lost: open with a backup, re-seal to the configured token"
    )
    c.add_argument("--token", action="store_true", help="open with a backup token")
    _token_args(c)
    c.set_defaults(func=run_recover)


def _token_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--module", metavar="PATH", help="the backup token's PKCS#11 module")
    p.add_argument("--token-label", metavar="LABEL", help="the backup token's label")
    key = p.add_mutually_exclusive_group()
    key.add_argument("--key-label", metavar="L", help="its P-256 key's label (made if absent)")
    key.add_argument("--piv-slot", metavar="S", help="its PIV slot holding a P-256 key")


def _kind(rid: str) -> str:
    from vaultd.keys.recovery import KIND

    return "recovery" if rid.startswith(f"{KIND}:") else "token"


def run_list(args: argparse.Namespace) -> int:
    from vaultd.app import opened_vault

    with opened_vault(settings()) as vault:
        ids = vault.store.recipients()
        tokens = vault.store.backup_tokens()
        primary = ids[0]
    for rid in ids:
        ref = tokens.get(rid)
        where = f" backup module={ref.module} label={ref.label} key={ref.key}" if ref else ""
        kind = _kind(rid)
        if kind == "token" and ref is None and rid != primary:
            kind = "old-token"  # the token a `vaultd rekey --module` moved the store from
        print(f"{kind:<9} {rid}{where}")
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

    if args.token:
        return _add_token(args)
    key = recovery.generate()
    with opened_vault(settings()) as vault:
        backups = vault.store.snapshot().backups
        vault.store.reseal([*backups, key.backup()])
    show_recovery_key(key)
    return 0


def _open_backup_token(args: argparse.Namespace, cfg: Settings, *, create: bool) -> BackupToken:
    """The backup token the options name, logged in with a PIN read hidden or from stdin."""
    from vaultd.app import allowed_module, open_backup_token
    from vaultd.commands.pin import read_pin
    from vaultd.errors import BadRequest
    from vaultd.keys.backup_token import identity
    from vaultd.keys.piv import check_slot

    if not args.module or not args.token_label:
        raise BadRequest("--token needs --module PATH and --token-label LABEL")
    if not args.key_label and not args.piv_slot:
        raise BadRequest("--token needs --key-label L or --piv-slot S naming the backup key")
    if args.piv_slot:
        check_slot(args.piv_slot, "--piv-slot")
    identity(allowed_module(cfg, args.module), args.token_label)  # present, before any PIN
    pin = read_pin(f"user PIN of backup token {args.token_label!r}", confirm=False)
    try:
        return open_backup_token(
            cfg,
            args.module,
            args.token_label,
            pin,
            key_label=args.key_label,
            piv_slot=args.piv_slot,
            create_key=create,
        )
    finally:
        pin[:] = bytes(len(pin))


def _refuse_primary(args: argparse.Namespace, cfg: Settings) -> None:
    """Refuse, before any PIN is asked, a backup token that is the vault's own token."""
    from vaultd.app import allowed_module, module_path, uses_token
    from vaultd.errors import BadRequest
    from vaultd.keys.backup_token import identity

    if not uses_token(cfg) or not args.module or not args.token_label:
        return
    primary = identity(module_path(cfg), cfg.pkcs11.token_label)
    if identity(allowed_module(cfg, args.module), args.token_label) == primary:
        raise BadRequest(
            f"token {args.token_label!r} is the vault's own token: a backup token must be "
            "another token, one that is kept apart from it; nothing was enrolled"
        )


def _add_token(args: argparse.Namespace) -> int:
    from vaultd.app import opened_vault
    from vaultd.errors import BadRequest
    from vaultd.keys.ecdh import key_id_for

    cfg = settings()
    _refuse_primary(args, cfg)
    token = _open_backup_token(args, cfg, create=True)
    try:
        backup = token.backup()  # K derived in the backup token
    finally:
        token.close()
    with opened_vault(cfg) as vault:
        if key_id_for(backup.point) == vault.token.key_id:
            raise BadRequest("that key is the vault's own key; nothing was enrolled")
        if backup.id in vault.store.recipients():
            raise BadRequest(f"{backup.id} already opens this store; nothing was enrolled")
        backups = vault.store.snapshot().backups
        vault.store.reseal([*backups, backup])
    print(f"enrolled backup token {args.token_label!r} ({backup.id}): every record re-sealed")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    from vaultd.app import opened_vault
    from vaultd.errors import BadRequest

    with opened_vault(settings()) as vault:
        ids = vault.store.recipients()
        if args.id not in ids:
            raise BadRequest(f"no key {args.id[:80]!r} opens this store; see `vaultd keys list`")
        if args.id == vault.token.key_id:
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
    if args.token:
        token = _open_backup_token(args, cfg, create=False)
        try:
            snap = recovery_store(cfg, token).snapshot()  # checks the store by K from the token
        finally:
            token.close()
    else:
        snap = recovery_store(cfg, read_recovery_key()).snapshot()  # by the key's own tag
    with opened_vault(cfg, create_key=True) as vault:
        vault.store.adopt(snap, snap.backups)
        token_id = vault.token.key_id
    print(
        f"recovered {len(snap.records)} records: the store is now sealed to token {token_id} "
        f"and {len(snap.backups)} backup(s)"
    )
    return 0
