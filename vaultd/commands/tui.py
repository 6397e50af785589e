"""`vaultd tui`: the terminal dashboard and approval dialogs, a client of the daemon's socket."""

from __future__ import annotations

import argparse

from vaultd.commands._args import Subparsers, settings


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("tui", help="dashboard, approval dialogs and events (needs `vaultd serve`)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.ipc.client import AsyncDaemonClient

    # vaultd.tui lives in tui/ (package-dir mapping), which mypy checks as `tui`.
    from vaultd.tui.app import make_app  # type: ignore[import-not-found,unused-ignore]

    config = settings()
    client = AsyncDaemonClient(config.socket, allow_root_daemon=config.ipc.allow_root)
    make_app(config, client).run()
    return 0
