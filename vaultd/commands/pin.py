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
    s = actions.add_parser(
        "store", help="put the token PIN where pin_source reads it (OS keyring or its file)"
    )
    s.set_defaults(func=run_store)
    f = actions.add_parser("file", help="write the token PIN into a 0600 file")
    f.add_argument("path", type=Path, help="absolute path, as in pin_source = 'file:PATH'")
    f.set_defaults(func=run_file)


def read_pin(prompt: str = "token PIN", *, confirm: bool = True) -> bytearray:
    """A PIN from a hidden prompt (typed twice with ``confirm``) or from stdin's first line;
    never argv or the environment. Zero it after use."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    import getpass

    if sys.stdin.isatty():
        first = getpass.getpass(f"{prompt} (hidden): ")
        if confirm and getpass.getpass("again: ") != first:
            raise BadRequest("the two PINs differ; nothing was done")
    else:
        first = sys.stdin.readline().rstrip("\r\n")
    if not first:
        raise BadRequest("the PIN is empty; nothing was done")
    return bytearray(first.encode("utf-8"))


def run_store(args: argparse.Namespace) -> int:
    """Store the PIN where ``pin_source`` reads it: the OS keyring, or its 0600 file; checked
    before the PIN is asked, so nothing is typed for nothing."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.commands.init_config import keyring_usable
    from vaultd.keys.pin import store_pin_in_keyring
    from vaultd.settings import default_config_path

    pkcs11 = settings().pkcs11
    source, label = pkcs11.pin_source, pkcs11.token_label
    if source.startswith("file:"):
        path = _write_pin_file(Path(source.removeprefix("file:")))
        print(f"wrote the PIN of token {label!r} to {path} (0600), where pin_source reads it")
        return 0
    if source != "keyring":
        raise BadRequest(
            f'pin_source = "{source}": vaultd asks for the token PIN at each start (`vaultd '
            f'unlock`), so there is nothing to store; to keep it, set pin_source = "keyring" '
            f'or "file:PATH" in {default_config_path()}'
        )
    if not keyring_usable():
        raise ConfigError(
            'pin_source = "keyring" but no OS keyring is usable here (headless?); nothing was '
            f'asked: set pin_source = "file:PATH" in {default_config_path()} and run '
            "`vaultd pin store` again (or `vaultd pin file PATH`)"
        )
    pin = read_pin()
    try:
        store_pin_in_keyring(label, pin)
    finally:
        pin[:] = bytes(len(pin))
    print(f"stored the PIN of token {label!r} in the OS keyring")
    return 0


def run_file(args: argparse.Namespace) -> int:
    path = _write_pin_file(args.path)
    print(f'wrote the PIN to {path} (0600); set pin_source = "file:{path}" in [pkcs11]')
    return 0


def _write_pin_file(path: Path) -> Path:
    """Ask the PIN and write it to ``path`` (absolute) with mode 0600."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.store.atomic import atomic_write

    path = path.expanduser()
    if not path.is_absolute():
        raise ConfigError(f"{path} must be an absolute path (pin_source = 'file:/absolute/path')")
    pin = read_pin()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(path, bytes(pin), mode=0o600)
    finally:
        pin[:] = bytes(len(pin))
    return path
