"""`vaultd pin store` or `vaultd pin file PATH`: put the token PIN where `pin_source` reads it.

The PIN is asked without echo on a terminal (twice), or read from stdin; never from argv.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vaultd.commands._args import Subparsers, settings
from vaultd.errors import BadRequest, ConfigError


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("pin", help="store the token PIN for pin_source (keyring or a 0600 file)")
    actions = p.add_subparsers(dest="pin_command", metavar="ACTION", required=True)
    s = actions.add_parser("store", help="put the token PIN into the OS keyring")
    s.set_defaults(func=run_store)
    f = actions.add_parser("file", help="write the token PIN into a 0600 file")
    f.add_argument("path", type=Path, help="absolute path, as in pin_source = 'file:PATH'")
    f.set_defaults(func=run_file)


def _read_pin() -> bytearray:
    """The PIN from a hidden prompt (typed twice) or from stdin's first line."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    import getpass

    if sys.stdin.isatty():
        first = getpass.getpass("token PIN (hidden): ")
        if getpass.getpass("again: ") != first:
            raise BadRequest("the two PINs differ; nothing was stored")
    else:
        first = sys.stdin.readline().rstrip("\r\n")
    if not first:
        raise BadRequest("the PIN is empty; nothing was stored")
    return bytearray(first.encode("utf-8"))


def run_store(args: argparse.Namespace) -> int:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.keys.pin import store_pin_in_keyring

    label = settings().pkcs11.token_label
    pin = _read_pin()
    try:
        store_pin_in_keyring(label, pin)
    finally:
        pin[:] = bytes(len(pin))
    print(f"stored the PIN of token {label!r} in the OS keyring")
    return 0


def run_file(args: argparse.Namespace) -> int:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.store.atomic import atomic_write

    path: Path = args.path.expanduser()
    if not path.is_absolute():
        raise ConfigError(f"{path} must be an absolute path (pin_source = 'file:/absolute/path')")
    pin = _read_pin()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(path, bytes(pin), mode=0o600)
    finally:
        pin[:] = bytes(len(pin))
    print(f'wrote the PIN to {path} (0600); set pin_source = "file:{path}" in [pkcs11]')
    return 0
