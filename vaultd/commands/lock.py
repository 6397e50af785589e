"""`vaultd lock [--seal]` and `vaultd unlock`."""

from __future__ import annotations

import argparse

from vaultd.commands._args import Subparsers
from vaultd.commands._client import client


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("lock", help="drop every cached session and pending approval")
    p.add_argument("--seal", action="store_true", help="also log out of the token")
    p.set_defaults(func=run_lock)
    p = sub.add_parser("unlock", help="send the token PIN to a sealed daemon (prompted)")
    p.set_defaults(func=run_unlock)


def run_lock(args: argparse.Namespace) -> int:
    client().request("lock", seal=args.seal)
    print("sealed" if args.seal else "locked: sessions and approvals dropped")
    return 0


def run_unlock(args: argparse.Namespace) -> int:
    from vaultd import app
    from vaultd.commands._args import settings

    cfg = settings()
    pin = app.read_pin(cfg) if app.uses_token(cfg) else bytearray()
    try:
        client().request("unlock", pin=pin.decode())
    finally:
        pin[:] = bytes(len(pin))
    print("unsealed")
    return 0
