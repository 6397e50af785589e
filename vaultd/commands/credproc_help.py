"""`vaultd credential-process PROFILE` in `--help` (the command itself bypasses argparse)."""

from __future__ import annotations

import argparse

from vaultd.commands._args import Subparsers


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "credential-process",
        help="print a profile's session as credential_process JSON (for ~/.aws/config)",
        description="Used as `credential_process = vaultd credential-process PROFILE`. "
        "The socket is --socket, else $VAULTD_SOCKET, else `socket` in the vaultd config "
        "file, else the default: found as `vaultd serve` finds it.",
    )
    p.add_argument("--socket", help="the daemon's socket path")
    p.add_argument("--allow-root-daemon", action="store_true", help="also trust a root daemon")
    p.add_argument("profile")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:  # pragma: no cover - cli.main dispatches earlier
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd import credproc

    argv = ["--socket", args.socket] if args.socket else []
    argv += ["--allow-root-daemon"] if args.allow_root_daemon else []
    return credproc.main([*argv, "--", args.profile])
