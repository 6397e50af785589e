"""`vaultd add NAME [--root]`: seal a long-lived key pair (never from argv)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from vaultd.commands._args import Subparsers, settings

if TYPE_CHECKING:
    from vaultd.core.model import LongTermCredentials


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "add",
        help="store an access key pair (JSON on stdin, or hidden prompts on a terminal)",
        description='Reads {"AccessKeyId": "...", "SecretAccessKey": "..."} from stdin when '
        "stdin is not a terminal; otherwise prompts without echo. Never takes keys from argv.",
    )
    p.add_argument("name", help="record name, [A-Za-z0-9._-]{1,64}")
    p.add_argument("--root", action="store_true", help="root credentials (break-glass only)")
    p.add_argument("--replace", action="store_true", help="replace an existing record")
    p.set_defaults(func=run)


def _read_key_pair(root: bool) -> LongTermCredentials:
    from vaultd.core.records import make_key_pair, parse_key_pair_input

    if not sys.stdin.isatty():
        return parse_key_pair_input(sys.stdin.read(1 << 16), root=root)
    import getpass

    key_id = getpass.getpass("AccessKeyId (hidden): ").strip()
    secret = getpass.getpass("SecretAccessKey (hidden): ").strip()
    return make_key_pair(key_id, secret, root=root)


def run(args: argparse.Namespace) -> int:
    from vaultd.app import opened_vault
    from vaultd.core.model import RECORD_NAME_RE, RecordKind, mask_key
    from vaultd.core.records import encode_key_pair
    from vaultd.errors import BadRequest

    if not RECORD_NAME_RE.match(args.name):
        raise BadRequest(f"name {args.name!r} must match [A-Za-z0-9._-]{{1,64}}")
    creds = _read_key_pair(args.root)
    with opened_vault(settings()) as vault:
        vault.store.put(
            RecordKind.KEY_PAIR,
            args.name,
            encode_key_pair(creds),
            masked_id=mask_key(creds.access_key_id),
            root=creds.root,
            replace=args.replace,
        )
    kind = "root key pair" if creds.root else "key pair"
    print(f"stored {kind} {args.name!r} ({mask_key(creds.access_key_id)})")
    return 0
