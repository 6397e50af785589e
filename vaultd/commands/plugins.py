"""`vaultd plugins list [--json]`: discovered plugins per group and what became of each.

Only plugins named in ``plugins.allow`` are imported; the others are listed as
``not-allowlisted`` from their entry-point metadata alone.
"""

from __future__ import annotations

import argparse
import json

from vaultd.commands._args import Subparsers, settings


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("plugins", help="list plugins and whether they loaded")
    actions = p.add_subparsers(dest="plugins_command", metavar="ACTION", required=True)
    lst = actions.add_parser("list", help="discovered plugins per group, allowlist and state")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.set_defaults(func=run_list)


def run_list(args: argparse.Namespace) -> int:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.plugin.registry import Kind, load_plugins

    allow = settings().plugins.allow
    loaded = load_plugins(allow)
    if args.json:
        doc = {
            "allow": list(allow),
            "plugins": [report.to_json() for report in loaded.reports],
            "missing": list(loaded.missing),
        }
        print(json.dumps(doc, indent=2))
        return 0
    for kind in Kind:
        reports = [r for r in loaded.reports if r.kind is kind]
        print(f"{kind.group}:")
        if not reports:
            print("  (none installed)")
        for r in reports:
            reason = f"  {r.reason}" if r.reason else ""
            print(f"  {r.name:<16} {r.state.value:<16} {r.distribution}{reason}")
    for name in loaded.missing:
        print(f"allowlisted but not installed: {name}")
    return 0
