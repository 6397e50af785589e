"""`vaultd fido2 enroll|list|remove`: the FIDO2 authenticators that approve with a touch."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from vaultd.commands._args import Subparsers, list_and_remove, settings
from vaultd.core.model import RECORD_NAME_RE, RecordKind
from vaultd.errors import ApprovalUnavailable, BadRequest, Fido2PinRequired, RecordExists

if TYPE_CHECKING:
    from fido2.ctap import CtapDevice

    from vaultd.fido2.verify import EnrolledCredential


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("fido2", help="enrol, list and remove FIDO2 authenticators")
    actions = p.add_subparsers(dest="fido2_command", metavar="ACTION", required=True)
    enroll = actions.add_parser(
        "enroll",
        help="enrol the connected authenticator (one touch; its PIN if it has one)",
    )
    enroll.add_argument("--name", required=True, help="a label, [A-Za-z0-9._-]{1,64}")
    enroll.set_defaults(func=run_enroll)
    list_and_remove(
        actions,
        listing=("list enrolled authenticators", run_list),
        removal=("forget an enrolled authenticator", "name", run_remove),
    )


def _ask_pin() -> str:
    """The authenticator PIN, typed on the controlling terminal (never argv or stdin)."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    import getpass

    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
    except OSError:
        raise Fido2PinRequired(
            "the authenticator has a PIN and there is no terminal to type it on: run "
            "`vaultd fido2 enroll` in a terminal"
        ) from None
    return getpass.getpass("Authenticator PIN: ")


def _pick_device(
    devices: Sequence[CtapDevice], enrolled: Sequence[EnrolledCredential], rp_id: str
) -> tuple[CtapDevice, bool]:
    """The first CTAP2 device not holding an enrolled credential, and whether it has a PIN."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    import secrets

    from fido2.ctap import CtapError
    from fido2.ctap2.base import Ctap2

    from vaultd.fido2.verify import client_data_hash

    allow: list[Mapping[str, Any]] = [
        {"type": "public-key", "id": c.credential_id} for c in enrolled
    ]
    cdh = client_data_hash(secrets.token_bytes(32), "probe", rp_id, kind="vaultd.enroll")
    already = 0
    for device in devices:
        try:
            ctap = Ctap2(device)
            if allow:
                ctap.get_assertion(rp_id, cdh, allow, options={"up": False})
                already += 1
                continue
        except CtapError as exc:
            if exc.code != CtapError.ERR.NO_CREDENTIALS:
                continue
        except (ValueError, OSError):
            continue  # CTAP1-only or unplugged
        return device, bool(ctap.info.options.get("clientPin"))
    if already:
        raise ApprovalUnavailable(
            "every connected FIDO2 authenticator is already enrolled: plug in another key"
        )
    raise ApprovalUnavailable(
        "no FIDO2 (CTAP2) authenticator found: plug in a security key (settings fido2.devices)"
    )


def run_enroll(args: argparse.Namespace) -> int:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    import getpass

    from vaultd.app import clock as app_clock
    from vaultd.app import opened_vault
    from vaultd.fido2.ceremony import enroll
    from vaultd.fido2.devices import open_devices
    from vaultd.fido2.gate import load_enrolled, save_enrolled

    if not RECORD_NAME_RE.match(args.name):
        raise BadRequest(f"name {args.name[:80]!r} must match [A-Za-z0-9._-]{{1,64}}")
    conf = settings()
    with opened_vault(conf) as vault:  # released during the touch: the daemon keeps serving
        enrolled = load_enrolled(vault.store)
    if any(c.name == args.name for c in enrolled):
        raise RecordExists(
            f"a FIDO2 authenticator named {args.name!r} is already enrolled: pick another name "
            f"or run `vaultd fido2 remove {args.name}` first"
        )
    device, has_pin = _pick_device(open_devices(conf.fido2.devices), enrolled, conf.fido2.rp_id)
    cred = enroll(
        device,
        name=args.name,
        rp_id=conf.fido2.rp_id,
        user_name=getpass.getuser(),
        pin=_ask_pin() if has_pin else None,
        exclude=enrolled,
        on_prompt=lambda: print("Touch your authenticator now.", file=sys.stderr, flush=True),
        clock=app_clock(),
    )
    with opened_vault(conf) as vault:
        save_enrolled(vault.store, cred, new=True)
        vault.audit("fido2_enrolled", name=args.name, hmac_secret=cred.hmac_secret)
    hmac = "with hmac-secret" if cred.hmac_secret else "without hmac-secret"
    print(f"enrolled FIDO2 authenticator {args.name!r} ({hmac})")
    if not enrolled:
        print(
            "This is your only enrolled authenticator: enrol a backup key too "
            "(`vaultd fido2 enroll --name NAME`), or losing this one locks touch approvals."
        )
    return 0


def run_list(args: argparse.Namespace) -> int:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.app import opened_vault
    from vaultd.fido2.gate import load_enrolled

    with opened_vault(settings()) as vault:
        enrolled = load_enrolled(vault.store)

    def when(value: object) -> str | None:
        return None if value is None else f"{value:%Y-%m-%dT%H:%M:%SZ}"

    rows = [
        {
            "name": c.name,
            "created": when(c.created),
            "last_used": when(c.last_used),
            "sign_count": c.sign_count,
            "suspect": c.suspect,
            "hmac_secret": c.hmac_secret,
        }
        for c in enrolled
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no FIDO2 authenticator enrolled: run `vaultd fido2 enroll --name NAME`")
    else:
        width = max(len(c.name) for c in enrolled)
        for r in rows:
            flag = "  SUSPECT: remove and re-enrol" if r["suspect"] else ""
            print(
                f"{r['name']:<{width}}  created {r['created']}  last used "
                f"{r['last_used'] or 'never':<20}  signCount {r['sign_count']}{flag}"
            )
    return 0


def run_remove(args: argparse.Namespace) -> int:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.app import opened_vault

    with opened_vault(settings()) as vault:
        vault.store.remove(RecordKind.FIDO2_CREDENTIAL, args.name)
        vault.audit("fido2_removed", name=args.name)
        left = vault.store.names(RecordKind.FIDO2_CREDENTIAL)
    print(f"removed FIDO2 authenticator {args.name!r}")
    if not left:
        print("no authenticator is enrolled now: touch approvals are unavailable")
    return 0
