"""`vaultd serve`: run the daemon in the foreground (systemd and launchd supervise it)."""

from __future__ import annotations

import argparse

from vaultd.commands._args import Subparsers, settings


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("serve", help="run the daemon (foreground; socket activation works)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    import logging

    from vaultd.daemon import serve

    logging.basicConfig(level=logging.INFO, format="vaultd[%(process)d] %(levelname)s %(message)s")
    for chatty in ("botocore", "boto3", "urllib3"):  # one line per STS call, nothing of ours
        logging.getLogger(chatty).setLevel(logging.WARNING)
    return serve(settings())
