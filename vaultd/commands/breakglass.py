"""`vaultd break-glass PROFILE --reason TEXT [-- CMD]`: a short root session after two factors.

Two kinds of profile: stored root keys (`vaultd add NAME --root`; GetSessionToken as root, for
standalone accounts), and AssumeRoot profiles (`source_profile` + `assume_root_account` +
`assume_root_task`: a fresh MFA session of the source IAM user, then sts:AssumeRoot into the
member account for at most 900 s, scoped to one root task; `--account`/`--task` pick another).
The MFA code (the root account's, or the source profile's device for AssumeRoot) and the
authenticator PIN are read from the terminal without echo, or — for scripts — as one JSON
object on stdin (`{"code": "123456", "pin": "..."}`); never from argv.  The credentials are
shown once (as shell exports) or, with `-- CMD`, given to CMD only; then the grant is ended.
Everything after the first `--` is the command, wherever the options stand.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from vaultd.commands._args import Subparsers, settings
from vaultd.commands._client import client
from vaultd.commands.exec import session_environment
from vaultd.errors import BadRequest, UnknownProfile

if TYPE_CHECKING:
    from vaultd.core.model import Profile
    from vaultd.ipc.client import DaemonClient
    from vaultd.settings import Settings


class _CommandAfterDashes(argparse.ArgumentParser):
    """Parses what stands before the first ``--``; what follows is the command, verbatim
    (argparse alone refuses ``PROFILE --reason TEXT -- CMD``: the positionals are consumed
    before the option)."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        words = list(sys.argv[1:] if args is None else args)
        tail: list[str] = []
        if "--" in words:
            cut = words.index("--")
            words, tail = words[:cut], words[cut + 1 :]
        parsed, extra = super().parse_known_args(words, namespace)
        parsed.command = [*parsed.command, *tail]
        return parsed, extra


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "break-glass",
        help="open a short, audited root session (reason + FIDO2 touch with PIN + MFA code)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.__class__ = _CommandAfterDashes
    p.add_argument("profile", help="a root-keys profile or an AssumeRoot profile")
    p.add_argument("--reason", required=True, help="why (recorded in the audit log)")
    p.add_argument(
        "--account", help="AssumeRoot: the 12-digit member account (default: the profile's)"
    )
    p.add_argument("--task", help="AssumeRoot: the root task (default: the profile's)")
    p.add_argument("command", nargs="*", help="-- CMD [ARGS...] to run with it")
    p.set_defaults(func=run)


def _factors(code_prompt: str) -> tuple[str, str | None]:
    if not sys.stdin.isatty():
        try:
            obj = json.loads(sys.stdin.read(4096))
        except ValueError:
            obj = None
        if not isinstance(obj, dict) or not isinstance(obj.get("code"), str):
            raise BadRequest('stdin must hold {"code": "123456", "pin": "..."} (pin optional)')
        pin = obj.get("pin")
        return obj["code"], pin if isinstance(pin, str) and pin else None
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    import getpass

    code = getpass.getpass(code_prompt).strip()
    pin = getpass.getpass("security key PIN (Enter if none): ")
    return code, pin or None


def _preflight(config: Settings, args: argparse.Namespace, daemon: DaemonClient) -> str:
    """The checks that need no factor, before any prompt; returns the code prompt.

    The daemon repeats them (its environment decides the STS endpoint) before the touch.
    """
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.core.breakglass import checked_reason
    from vaultd.daemon.lifecycle import profiles_from

    checked_reason(args.reason)
    profiles = profiles_from(config)
    profile = profiles.get(args.profile)
    if profile is None:
        raise UnknownProfile(f"no profile {args.profile!r} in the vaultd config")
    if profile.source_profile is None or profile.target_account is None:
        if args.account is not None or args.task is not None:
            raise BadRequest(
                f"--account and --task apply to AssumeRoot profiles only; {args.profile!r} "
                "uses stored root keys"
            )
        _check_root_keys(profile, daemon)
        return "root account MFA code: "
    return _assume_root_preflight(profile, profiles[profile.source_profile], args)


def _check_root_keys(profile: Profile, daemon: DaemonClient) -> None:
    """Refuse, before any factor is asked, a profile whose key pair the daemon does not list
    as a root key pair (from the record headers; the daemon checks the opened record)."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.core.breakglass import not_a_root_profile

    if profile.credentials is None or profile.role_arn is not None:
        raise not_a_root_profile(profile.name)
    records = daemon.request("records")["records"]
    assert isinstance(records, list)  # noqa: S101 - protocol guarantees a list
    if not any(r["name"] == profile.credentials and r["kind"] == "root_key_pair" for r in records):
        raise not_a_root_profile(profile.name)


def _assume_root_preflight(profile: Profile, source: Profile, args: argparse.Namespace) -> str:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd import app
    from vaultd.core import assume_root

    target = assume_root.target_of(profile, source, account=args.account, task=args.task)
    app.sts_client().assume_root_endpoint(target.region)
    print(
        f"vaultd: AssumeRoot into {target.account} for {assume_root.task_name(target.task_arn)} "
        f"({target.duration} s) via {source.name}",
        file=sys.stderr,
    )
    return f"MFA code of {source.mfa_serial} (a fresh session for {source.name}): "


def run(args: argparse.Namespace) -> int:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    import shlex

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    daemon = client(timeout=120)
    code, pin = _factors(_preflight(settings(), args, daemon))
    print("vaultd: touch your security key (user verification) ...", file=sys.stderr)
    fields: dict[str, Any] = {"profile": args.profile, "reason": args.reason, "code": code}
    optional = {"pin": pin, "account": args.account, "task": args.task}
    fields.update((k, v) for k, v in optional.items() if v)
    reply = daemon.request("breakglass", **fields)
    grant = reply["grant"]
    assert isinstance(grant, dict)  # noqa: S101 - protocol guarantees an object
    grant_id = str(grant["id"])
    print(f"vaultd: break-glass grant {grant_id} until {grant['expires_at']}", file=sys.stderr)
    output = json.dumps(reply["output"]).encode()  # sent on this connection only, once
    env = session_environment(output, args.profile, dict(os.environ))
    if not command:
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            print(f"export {key}={shlex.quote(env[key])}")
        print(f"export AWS_CREDENTIAL_EXPIRATION={shlex.quote(env['AWS_CREDENTIAL_EXPIRATION'])}")
        print("vaultd: shown once; the grant is ended", file=sys.stderr)
        daemon.request("grant_end", id=grant_id)
        return 0
    import subprocess

    try:
        return subprocess.call(command, env=env)  # noqa: S603 - the user's own command
    finally:
        daemon.request("grant_end", id=grant_id)
