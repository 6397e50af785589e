"""`vaultd list [--json]`: names, kinds, masked key ids, creation times; never secrets.

These come from the records' plaintext headers, read without opening (authenticating) each
record, so anyone who can write the store could have changed them: the listing says so, and
every field is made terminal-safe (docs/threat-model.md T35).
"""

from __future__ import annotations

import argparse

from vaultd.commands._args import Subparsers, settings

UNVERIFIED_NOTE = (
    "(unverified: read from the record headers without opening the records; a record that "
    "was tampered with fails when it is used)"
)


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("list", help="list stored records (no secrets)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from vaultd.app import opened_vault
    from vaultd.core.termtext import terminal_safe

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
            line = f"{r['name']:<{width}}  {r['kind']:<16}  {r['key_id']:<20}  {r['created']}"
            print(terminal_safe(line))
        print(UNVERIFIED_NOTE)
    return 0
