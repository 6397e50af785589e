"""`vaultd init`: write a first config when there is none, else create the vault key and store.

With no config file, init finds the PKCS#11 modules and tokens here and writes a commented
config (``vaultd/commands/init_config.py``); run it again to create the key.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Final

from vaultd.commands._args import (
    Subparsers,
    add_management_key_argument,
    read_management_key,
    settings,
)
from vaultd.errors import ConfigError

if TYPE_CHECKING:
    from vaultd.core.ports import SealingKey


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("init", help="write a first config, then create the token key and store")
    p.add_argument("--module", help="first run: the PKCS#11 module path (else asked or found)")
    p.add_argument("--token", help="first run: the token label (else asked)")
    p.add_argument(
        "--pin-source",
        help="first run: keyring, file:/absolute/path or prompt (else the keyring when usable)",
    )
    p.add_argument(
        "--no-backup",
        action="store_true",
        help="make no recovery key: the vault is lost with the token",
    )
    add_management_key_argument(p)
    p.add_argument(
        "--protect-management-key",
        action="store_true",
        help="PIV card: replace the factory default management key with a random one stored "
        "PIN-protected on the card (needs vaultd[yubikey])",
    )
    p.set_defaults(func=run)


def _first_run(args: argparse.Namespace) -> int:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.commands.init_config import choose, next_commands, write_config
    from vaultd.settings import default_config_path

    path = default_config_path()
    choices = choose(
        module=args.module,
        token=args.token,
        pin_source=args.pin_source,
        config_path=path,
        ask=input if sys.stdin.isatty() else None,
    )
    write_config(path, choices)
    print(
        f"wrote {path} (module {choices.module}, token {choices.token_label!r}, PIN from "
        f"{choices.pin_source}); next:"
    )
    for command in next_commands(choices, path):
        print(f"  {command}")
    return 0


def _unconfigured() -> bool:
    """No config file and nothing in the environment says where the vault key lives."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.app import uses_token

    cfg = settings()
    return uses_token(cfg) and cfg.pkcs11.module is None


_SCHEME_WORDS: Final = {
    "ecdh-p256": "token ECDH: P-256",
    "rsa-oaep": "token RSA-OAEP: RSA-2048",
}


def _token_ready(token_label: str, key_label: str, key: SealingKey) -> str:
    """What init made: the scheme, and what this token cannot do (SECURITY.md)."""
    from vaultd.keys.ecdh import HostSealedKey

    info = key.inspect()
    words = _SCHEME_WORDS.get(str(info.get("scheme")))
    if words is None:
        return (
            f"token {token_label!r}: key {key_label!r} ready (AES-256, sensitive, never "
            "extractable)"
        )
    text = (
        f"token {token_label!r}: key {info.get('key_label')!r} ready ({words}, sensitive, never "
        f"extractable; {key.key_id}; audit: {info.get('audit')})"
    )
    for note in key.notes if isinstance(key, HostSealedKey) else ():
        text += f"\n{note}"
    if not info.get("rollback_protection"):
        text += (
            "\nWARNING: this token keeps no data objects, so rollback protection is unavailable "
            "(an older copy of the store would open; SECURITY.md)"
        )
    return text


def run(args: argparse.Namespace) -> int:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.app import opened_vault, uses_token
    from vaultd.commands.init_config import default_pin_file, keyring_usable
    from vaultd.commands.keys import show_recovery_key
    from vaultd.keys import recovery
    from vaultd.keys.piv import PivSetup
    from vaultd.settings import default_config_path

    path = default_config_path()
    if not path.exists() and (os.environ.get("VAULTD_CONFIG") or _unconfigured()):
        return _first_run(args)
    if args.module or args.token or args.pin_source:
        raise ConfigError(
            "vaultd is configured already: --module, --token and --pin-source are for the "
            f"first run only; edit {path} instead"
        )
    cfg = settings()
    if uses_token(cfg) and cfg.pkcs11.pin_source == "keyring" and not keyring_usable():
        raise ConfigError(
            'pin_source = "keyring" but no OS keyring is usable here (headless?): set '
            f'pin_source = "{default_pin_file(default_config_path())}" in [pkcs11] and run '
            '`vaultd pin file PATH`, or pin_source = "prompt"'
        )
    setup = PivSetup(
        management_key=read_management_key() if args.management_key_stdin else None,
        protect=args.protect_management_key,
    )
    with opened_vault(cfg, create_key=True, piv_setup=setup) as vault:
        created = not vault.store.exists()
        backup = None if args.no_backup or not created else recovery.generate()
        if created:
            vault.store.initialize([] if backup is None else [backup.backup()])
        else:
            vault.store.list()  # verifies header, generation and key id
        if uses_token(cfg):
            print(_token_ready(cfg.pkcs11.token_label, cfg.pkcs11.key_label, vault.token))
        else:
            hardware = vault.token.inspect().get("hardware")
            kind = "hardware" if hardware else "SOFTWARE, weaker than a token"
            print(
                f"key store {cfg.keystore!r}: key {cfg.keystore_key_label!r} ready "
                f"({vault.token.key_id}; AES-256, {kind})"
            )
        print(f"store {'created' if created else 'present'}: {cfg.data_dir}")
    if backup is not None:
        show_recovery_key(backup)
    elif created:
        print("no backup key (--no-backup): the vault is lost with the token")
    return 0
