"""`vaultd credential-process PROFILE` in `--help` (the command itself bypasses argparse)."""

from __future__ import annotations

import argparse

from vaultd.commands._args import Subparsers


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "credential-process",
        help="print a profile's session as credential_process JSON (for ~/.aws/config)",
        description="Used as `credential_process = vaultd credential-process PROFILE`. "
        "The socket is --socket, $VAULTD_SOCKET or the default; set one of them when the "
        "config moves the socket.",
    )
    p.add_argument("--socket", help="the daemon's socket path")
    p.add_argument("profile")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:  # pragma: no cover - cli.main dispatches earlier
    from vaultd import credproc

    argv = ["--socket", args.socket, args.profile] if args.socket else [args.profile]
    return credproc.main(argv)
