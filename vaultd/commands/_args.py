"""Small helpers shared by subcommand modules."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from vaultd.settings import Settings

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def list_and_remove(
    actions: Subparsers,
    *,
    listing: tuple[str, Callable[[argparse.Namespace], int]],
    removal: tuple[str, str, Callable[[argparse.Namespace], int]],
) -> None:
    """Add the ``list [--json]`` and ``remove NAME`` actions: (help, func), (help, arg, func)."""
    list_help, run_list = listing
    parser = actions.add_parser("list", help=list_help)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run_list)
    remove_help, arg, run_remove = removal
    parser = actions.add_parser("remove", help=remove_help)
    parser.add_argument(arg)
    parser.set_defaults(func=run_remove)


def settings() -> Settings:
    """Load settings (lazily: pydantic is imported only by commands that need it)."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.settings import load_settings

    return load_settings()


def add_management_key_argument(parser: argparse.ArgumentParser, *, after: str = "") -> None:
    """Add ``--management-key-stdin`` (read with :func:`read_management_key`)."""
    parser.add_argument(
        "--management-key-stdin",
        action="store_true",
        help=f"PIV card: read the management key (hex) from stdin{after} to generate keys; else "
        "the one stored PIN-protected on the card, else the factory default, with a warning",
    )


def read_management_key() -> bytes:
    """The PIV management key from one line of stdin: 24 bytes (3DES) in hex."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.errors import ConfigError

    text = sys.stdin.readline().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 24:
        raise ConfigError(
            "--management-key-stdin wants the PIV management key as 48 hex digits (3DES, as "
            "ykcs11 takes it) on one line of stdin"
        )
    return key
