"""`vaultd init`: open the token (or key store), create the key-encryption key and the store."""

from __future__ import annotations

import argparse

from vaultd.commands._args import Subparsers, settings


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("init", help="create the token key and an empty store")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vaultd.app import opened_vault, uses_token

    cfg = settings()
    with opened_vault(cfg, create_key=True) as vault:
        created = not vault.store.exists()
        if created:
            vault.store.initialize()
        else:
            vault.store.list()  # verifies header, generation and key id
        if uses_token(cfg):
            print(
                f"token {cfg.pkcs11.token_label!r}: key {cfg.pkcs11.key_label!r} ready "
                "(AES-256, sensitive, never extractable)"
            )
        else:
            hardware = vault.token.inspect().get("hardware")
            kind = "hardware" if hardware else "SOFTWARE, weaker than a token"
            print(
                f"key store {cfg.keystore!r}: key {cfg.keystore_key_label!r} ready "
                f"({vault.token.key_id}; AES-256, {kind})"
            )
        print(f"store {'created' if created else 'present'}: {cfg.data_dir}")
    return 0
