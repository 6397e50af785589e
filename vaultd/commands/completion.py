"""`vaultd completion bash|zsh|fish`: print a completion script."""

from __future__ import annotations

import argparse

from vaultd.commands._args import Subparsers


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("completion", help="print a shell completion script")
    p.add_argument("shell", choices=["bash", "zsh", "fish"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vaultd.completions import SHELLS

    print(SHELLS[args.shell](), end="")
    return 0
