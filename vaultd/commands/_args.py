"""Small helpers shared by subcommand modules."""

from __future__ import annotations

import argparse
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
