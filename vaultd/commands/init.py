"""`vaultd init`: find the token, log in, create the key-encryption key and the store."""

from __future__ import annotations

import argparse

from vaultd.commands._args import Subparsers, settings


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("init", help="create the token key and an empty store")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vaultd.app import opened_vault

    cfg = settings()
    with opened_vault(cfg, create_key=True) as vault:
        created = not vault.store.exists()
        if created:
            vault.store.initialize()
        else:
            vault.store.list()  # verifies header, generation and key id
        print(
            f"token {cfg.pkcs11.token_label!r}: key {cfg.pkcs11.key_label!r} ready "
            "(AES-256, sensitive, never extractable)"
        )
        print(f"store {'created' if created else 'present'}: {cfg.data_dir}")
    return 0
