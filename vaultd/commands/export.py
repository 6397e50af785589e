"""`vaultd export [--format env|json|ini] [--region R] PROFILE`: print the profile's session.

For tools that read environment variables (``eval "$(vaultd export work)"``), credential_process
JSON, or a credentials file. Only session credentials leave the daemon: a profile backed by root
keys is refused there (``BREAK_GLASS_ONLY``) and break-glass grants are never exported.

Every value is checked before anything is printed: key ids, secrets and session tokens must be
in the base64 alphabet STS uses, so no value can end a quote, start a line or an INI section,
or add a key; then each is quoted for its format (``shlex.quote`` for env, ``json.dumps``).
"""

from __future__ import annotations

import argparse
import json
import re
from typing import TYPE_CHECKING, Final

from vaultd.commands._args import Subparsers, settings
from vaultd.errors import ProtocolError

if TYPE_CHECKING:
    from vaultd.core.model import SessionCredentials

FORMATS: Final = ("env", "json", "ini")
_STS_VALUE: Final = re.compile(r"[A-Za-z0-9+/=]{1,8192}")
"""Key ids, secrets and session tokens as STS sends them (base64 alphabet)."""


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "export",
        help="print a profile's session as env, json or ini",
        description="Print the profile's session credentials (never the long-lived keys): "
        "env is `export NAME=VALUE` lines for `eval` or `source`; json is the "
        "credential_process document; ini is a [PROFILE] section for a shared credentials "
        "file. Approval works as for `vaultd exec`. Root-key profiles are refused "
        "(BREAK_GLASS_ONLY). The session is printed on stdout: do not leave it in a file.",
    )
    add_format_arguments(p)
    p.add_argument("profile")
    p.set_defaults(func=run)


def add_format_arguments(p: argparse.ArgumentParser) -> None:
    """``--format`` and ``--region`` (shared with `vaultd exec`)."""
    p.add_argument("--format", choices=FORMATS, default="env", help="output format (env)")
    p.add_argument(
        "--region",
        help="also set AWS_REGION and AWS_DEFAULT_REGION (env) or region (ini); default: the "
        "profile's region, if set",
    )


def run(args: argparse.Namespace) -> int:
    print(export_text(args.profile, args.format, args.region), end="")
    return 0


def export_text(profile: str, fmt: str, region: str | None) -> str:
    """Fetch the session for ``profile`` from the daemon and render it as ``fmt``."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.aws.container_endpoint import fetch_from_daemon, parse_session
    from vaultd.commands.exec import checked_profile, chosen_region  # exec imports this module

    cfg = settings()
    name = checked_profile(profile)
    chosen = chosen_region(cfg, name, region)
    creds = parse_session(fetch_from_daemon(str(cfg.socket), name))
    return render(creds, fmt, name, chosen)


def render(creds: SessionCredentials, fmt: str, profile: str, region: str | None) -> str:
    """``creds`` as ``fmt`` text; ``ProtocolError`` if a value is not what STS sends.

    ``profile`` and ``region`` must already be checked (``checked_profile``, ``chosen_region``).
    """
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    import shlex

    from vaultd.aws.credential_process import EXPIRATION_FORMAT
    from vaultd.aws.credential_process import render as credential_json

    _check(creds)
    expiration = creds.expiration.strftime(EXPIRATION_FORMAT)
    if fmt == "json":
        return json.dumps(json.loads(credential_json(creds)), indent=2) + "\n"
    if fmt == "ini":
        lines = [
            f"[{profile}]",
            f"# vaultd session, expires {expiration}",
            f"aws_access_key_id = {creds.access_key_id}",
            f"aws_secret_access_key = {creds.secret_access_key}",
            f"aws_session_token = {creds.session_token}",
        ]
        return "\n".join([*lines, *([f"region = {region}"] if region else [])]) + "\n"
    variables = {
        "AWS_ACCESS_KEY_ID": creds.access_key_id,
        "AWS_SECRET_ACCESS_KEY": creds.secret_access_key,
        "AWS_SESSION_TOKEN": creds.session_token,
        "AWS_CREDENTIAL_EXPIRATION": expiration,
    }
    if region:
        variables.update(AWS_REGION=region, AWS_DEFAULT_REGION=region)
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in variables.items())


def _check(creds: SessionCredentials) -> None:
    """Refuse a session whose key id, secret or token holds anything but base64 characters."""

    fields = {
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key,
        "SessionToken": creds.session_token,
    }
    for name, value in fields.items():
        if not _STS_VALUE.fullmatch(value):
            raise ProtocolError(
                f"refused to export the session: its {name} holds characters STS never sends "
                "(only A-Z a-z 0-9 + / = are exported); nothing was printed"
            )
