"""`vaultd add NAME [--root]`: seal a long-lived key pair (never from argv)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from vaultd.commands._args import Subparsers, settings
from vaultd.core.model import RECORD_NAME_RE, LongTermCredentials, RecordKind, mask_key
from vaultd.errors import ApprovalUnavailable, BadRequest

if TYPE_CHECKING:
    from vaultd.app import OpenStore
    from vaultd.core.model import LongTermCredentials


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "add",
        help="store an access key pair (JSON on stdin, or hidden prompts on a terminal)",
        description='Reads {"AccessKeyId": "...", "SecretAccessKey": "..."}, or the output of '
        "`aws iam create-access-key`, from stdin when stdin is not a terminal; otherwise asks "
        "for the AccessKeyId (shown) and the secret (hidden), checking each as it is entered. "
        "Never takes keys from argv.",
    )
    p.add_argument("name", help="record name, [A-Za-z0-9._-]{1,64}")
    p.add_argument("--root", action="store_true", help="root credentials (break-glass only)")
    p.add_argument("--replace", action="store_true", help="replace an existing record")
    p.add_argument(
        "--bind-fido2",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also bind the record to every enrolled FIDO2 authenticator (hmac-secret): "
        "opening it then needs a touch even with the token PIN. Default: on with --root",
    )
    p.add_argument(
        "--allow-single-authenticator",
        action="store_true",
        help="bind to one authenticator only (lose it and the record is gone: keep the "
        "credentials elsewhere offline as your recovery path)",
    )
    p.set_defaults(func=run)


def _bind(vault: OpenStore, name: str, plaintext: bytes, single_ok: bool) -> bytes:
    """Encrypt ``plaintext`` to the hmac-secret outputs of the enrolled authenticators."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    import threading

    from vaultd.app import cli_touch_gate
    from vaultd.fido2.gate import bind_plaintext, load_enrolled

    cfg = settings()
    names = [c.name for c in load_enrolled(vault.store) if c.hmac_secret and not c.suspect]
    if not names:
        raise ApprovalUnavailable(
            "binding needs an enrolled FIDO2 authenticator with hmac-secret: "
            "`vaultd fido2 enroll --name NAME` (or pass --no-bind-fido2)"
        )
    if len(names) < 2 and not single_ok:
        raise ApprovalUnavailable(
            "only one authenticator is enrolled: enrol a backup key first "
            "(`vaultd fido2 enroll --name backup`), or pass --allow-single-authenticator "
            "and keep the credentials offline as the recovery path"
        )
    gate = cli_touch_gate(cfg, vault)

    def prompt(cred: object) -> None:
        print(f"touch authenticator {getattr(cred, 'name', '')!r} ...", file=sys.stderr)

    return bind_plaintext(
        plaintext,
        lambda salt: gate.hmac_outputs(
            f"bind-{name}", salt, names, on_prompt=prompt, cancel=threading.Event(), timeout=60
        ),
    )


PROMPT_TRIES = 3


def _ask(read: Callable[[str], str], prompt: str, check: Callable[[str], str]) -> str:
    """Ask until ``check`` accepts the answer (at most ``PROMPT_TRIES`` times)."""

    for attempt in range(1, PROMPT_TRIES + 1):
        try:
            return check(read(prompt).strip())
        except BadRequest as exc:
            if attempt == PROMPT_TRIES:
                raise
            print(f"  {exc}; try again", file=sys.stderr)
    raise AssertionError("unreachable")  # pragma: no cover


def _read_key_pair(root: bool) -> LongTermCredentials:
    """The key pair from stdin (JSON) or, on a terminal, prompts checked as each is entered.

    The AccessKeyId is not secret and is shown as typed; the secret is never echoed.
    """
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    import getpass

    from vaultd.core.records import (
        check_access_key_id,
        check_secret_access_key,
        parse_key_pair_input,
    )

    if not sys.stdin.isatty():
        return parse_key_pair_input(sys.stdin.read(1 << 16), root=root)
    key_id = _ask(input, "AccessKeyId: ", check_access_key_id)
    secret = _ask(getpass.getpass, "SecretAccessKey (hidden): ", check_secret_access_key)
    return LongTermCredentials(key_id, secret, root=root)


def store_key_pair(
    vault: OpenStore,
    name: str,
    creds: LongTermCredentials,
    plaintext: bytes | None = None,
    *,
    replace: bool = False,
) -> None:
    """Seal ``creds`` as key pair record ``name`` (``plaintext``: its FIDO2-bound encoding)."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.core.records import encode_key_pair

    vault.store.put(
        RecordKind.KEY_PAIR,
        name,
        encode_key_pair(creds) if plaintext is None else plaintext,
        masked_id=mask_key(creds.access_key_id),
        root=creds.root,
        replace=replace,
    )


def run(args: argparse.Namespace) -> int:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.app import opened_vault
    from vaultd.core.records import encode_key_pair

    if not RECORD_NAME_RE.match(args.name):
        raise BadRequest(f"name {args.name!r} must match [A-Za-z0-9._-]{{1,64}}")
    creds = _read_key_pair(args.root)
    bind = args.root if args.bind_fido2 is None else args.bind_fido2
    with opened_vault(settings()) as vault:
        plaintext = encode_key_pair(creds)
        if bind:
            plaintext = _bind(vault, args.name, plaintext, args.allow_single_authenticator)
        store_key_pair(vault, args.name, creds, plaintext, replace=args.replace)
        vault.audit(
            "record_added",
            kind="key_pair",
            name=args.name,
            key=mask_key(creds.access_key_id),
            root=creds.root,
            fido2_bound=bind,
            replaced=args.replace,
        )
    kind = "root key pair" if creds.root else "key pair"
    bound = ", bound to FIDO2" if bind else ""
    print(f"stored {kind} {args.name!r} ({mask_key(creds.access_key_id)}{bound})")
    return 0
