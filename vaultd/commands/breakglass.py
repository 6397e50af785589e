"""`vaultd break-glass PROFILE --reason TEXT`: a short root session after two factors.

The root account's MFA code and the authenticator PIN are read from the terminal without
echo, or — for scripts — as one JSON object on stdin (`{"code": "123456", "pin": "..."}`);
never from argv.  The credentials are shown once (as shell exports) or, with `-- CMD`, given
to CMD only; then the grant is ended.
"""

from __future__ import annotations

import argparse
import sys

from vaultd.commands._args import Subparsers


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "break-glass",
        help="open a short, audited root session (reason + FIDO2 touch with PIN + TOTP)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("profile", help="a profile whose credentials are a --root key pair")
    p.add_argument("--reason", required=True, help="why (recorded in the audit log)")
    p.add_argument("command", nargs="*", help="-- CMD [ARGS...] to run with it")
    p.set_defaults(func=run)


def _factors() -> tuple[str, str | None]:
    import json

    from vaultd.errors import BadRequest

    if not sys.stdin.isatty():
        try:
            obj = json.loads(sys.stdin.read(4096))
        except ValueError:
            obj = None
        if not isinstance(obj, dict) or not isinstance(obj.get("code"), str):
            raise BadRequest('stdin must hold {"code": "123456", "pin": "..."} (pin optional)')
        pin = obj.get("pin")
        return obj["code"], pin if isinstance(pin, str) and pin else None
    import getpass

    code = getpass.getpass("root account MFA code: ").strip()
    pin = getpass.getpass("security key PIN (Enter if none): ")
    return code, pin or None


def run(args: argparse.Namespace) -> int:
    import json
    import os

    from vaultd.commands._client import client
    from vaultd.commands.exec import session_environment

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    code, pin = _factors()
    daemon = client(timeout=120)
    print("vaultd: touch your security key (user verification) ...", file=sys.stderr)
    if pin:
        reply = daemon.request(
            "breakglass", profile=args.profile, reason=args.reason, code=code, pin=pin
        )
    else:
        reply = daemon.request("breakglass", profile=args.profile, reason=args.reason, code=code)
    grant = reply["grant"]
    assert isinstance(grant, dict)  # noqa: S101 - protocol guarantees an object
    grant_id = str(grant["id"])
    print(f"vaultd: break-glass grant {grant_id} until {grant['expires_at']}", file=sys.stderr)
    output = json.dumps(reply["output"]).encode()  # sent on this connection only, once
    env = session_environment(output, args.profile, dict(os.environ))
    if not command:
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            print(f"export {key}={env[key]}")
        print(f"export AWS_CREDENTIAL_EXPIRATION={env['AWS_CREDENTIAL_EXPIRATION']}")
        print("vaultd: shown once; the grant is ended", file=sys.stderr)
        daemon.request("grant_end", id=grant_id)
        return 0
    import subprocess

    try:
        return subprocess.call(command, env=env)  # noqa: S603 - the user's own command
    finally:
        daemon.request("grant_end", id=grant_id)
