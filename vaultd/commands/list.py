"""`vaultd list [--json]`: names, kinds, masked key ids, creation times; never secrets."""

from __future__ import annotations

import argparse

from vaultd.commands._args import Subparsers, settings


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("list", help="list stored records (no secrets)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from vaultd.app import opened_vault

    with opened_vault(settings()) as vault:
        infos = vault.store.list()
    rows = [
        {
            "name": info.name,
            "kind": "root_key_pair" if info.root else info.kind.value,
            "key_id": info.masked_id,
            "created": info.created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        for info in sorted(infos, key=lambda i: (i.kind.value, i.name))
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no records: add one with `vaultd add NAME`")
    else:
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            print(f"{r['name']:<{width}}  {r['kind']:<16}  {r['key_id']:<20}  {r['created']}")
    return 0
