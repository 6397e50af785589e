"""`vaultd mfa add-totp|list|remove`: AWS virtual MFA seeds, sealed so the daemon can make codes.

A seed is read from stdin or a hidden prompt, never from argv. With a stored seed, the token
plus the touch gate form the second factor (SECURITY.md).
"""

from __future__ import annotations

import argparse
import json
import sys

from vaultd.commands._args import Subparsers, list_and_remove, settings
from vaultd.core.model import RecordKind
from vaultd.errors import RecordNotFound

_MAX_INPUT = 4096


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("mfa", help="store, list and remove AWS virtual MFA seeds")
    actions = p.add_subparsers(dest="mfa_command", metavar="ACTION", required=True)
    add = actions.add_parser(
        "add-totp",
        help="seal the seed of an AWS virtual MFA device (base32 or otpauth:// URI on stdin)",
        description="Reads the base32 secret or the otpauth://totp/ URI from stdin when stdin "
        "is not a terminal, otherwise from a hidden prompt. Only SHA1, 6 digits, 30 s.",
    )
    add.add_argument("serial", help="the MFA device ARN (or hardware serial)")
    add.set_defaults(func=run_add)
    list_and_remove(
        actions,
        listing=("list the serials with a stored seed", run_list),
        removal=("delete the stored seed of a serial", "serial", run_remove),
    )


def _read_seed_text() -> str:
    if sys.stdin.isatty():
        # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
        import getpass

        return getpass.getpass("TOTP seed or otpauth:// URI (hidden): ")
    return sys.stdin.read(_MAX_INPUT)


def run_add(args: argparse.Namespace) -> int:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.app import opened_vault
    from vaultd.core.records import encode_totp_seed, parse_totp_input, seed_record_name

    name = seed_record_name(args.serial)
    seed = parse_totp_input(_read_seed_text(), serial=args.serial)
    try:
        with opened_vault(settings()) as vault:
            vault.store.put(RecordKind.TOTP_SEED, name, encode_totp_seed(seed))
            vault.audit("totp_seed_added", serial=args.serial)
    finally:
        seed.wipe()
    print(f"stored the TOTP seed of {args.serial}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.app import opened_vault
    from vaultd.core.records import decode_totp_seed

    rows: list[dict[str, str]] = []
    with opened_vault(settings()) as vault:
        for info in vault.store.list():
            if info.kind is RecordKind.TOTP_SEED:
                plaintext = vault.store.get(RecordKind.TOTP_SEED, info.name)
                seed = decode_totp_seed(plaintext, name=info.name)
                seed.wipe()
                rows.append(
                    {"serial": seed.serial, "created": f"{info.created:%Y-%m-%dT%H:%M:%SZ}"}
                )
    rows.sort(key=lambda r: r["serial"])
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no MFA seed stored: add one with `vaultd mfa add-totp SERIAL`")
    else:
        for r in rows:
            print(f"{r['serial']}  {r['created']}")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.app import opened_vault
    from vaultd.core.records import seed_record_name

    name = seed_record_name(args.serial)
    with opened_vault(settings()) as vault:
        if name not in vault.store.names(RecordKind.TOTP_SEED):
            raise RecordNotFound(f"no MFA seed is stored for {args.serial}")
        vault.store.remove(RecordKind.TOTP_SEED, name)
        vault.audit("totp_seed_removed", serial=args.serial)
    print(f"removed the TOTP seed of {args.serial}")
    return 0
