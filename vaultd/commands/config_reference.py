"""`vaultd config-reference`: print the configuration reference generated from the model."""

from __future__ import annotations

import argparse

from vaultd.commands._args import Subparsers


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("config-reference", help="print every setting with its default (Markdown)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vaultd.config_reference import render

    print(render(), end="")
    return 0
