"""`vaultd exec PROFILE -- CMD ARGS`: run CMD with the profile's session in its environment."""

from __future__ import annotations

import argparse

from vaultd.commands._args import Subparsers, settings


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "exec",
        help="run a command with the session credentials in its environment",
        description="Session credentials only (never the long-lived keys) are set as "
        "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN and "
        "AWS_CREDENTIAL_EXPIRATION; AWS_PROFILE is removed so the command does not loop "
        "back through credential_process.",
    )
    p.add_argument("profile")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    p.set_defaults(func=run)


def session_environment(output: bytes, profile: str, base: dict[str, str]) -> dict[str, str]:
    """The child's environment: ``base`` plus the session from credential_process JSON."""
    import json

    creds = json.loads(output)
    env = {k: v for k, v in base.items() if k not in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE")}
    env.update(
        AWS_ACCESS_KEY_ID=creds["AccessKeyId"],
        AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"],
        AWS_SESSION_TOKEN=creds["SessionToken"],
        AWS_CREDENTIAL_EXPIRATION=creds["Expiration"],
        VAULTD_PROFILE=profile,
    )
    return env


def run(args: argparse.Namespace) -> int:
    import os

    from vaultd.credproc import Failure, fetch
    from vaultd.errors import BadRequest
    from vaultd.ipc.protocol import error_from_reply

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise BadRequest("nothing to run: vaultd exec PROFILE -- CMD [ARGS...]")
    try:
        output = fetch(str(settings().socket), args.profile, action="exec")
    except Failure as failure:
        raise error_from_reply({"code": failure.code, "message": failure.message}) from None
    env = session_environment(output, args.profile, dict(os.environ))
    try:
        os.execvpe(command[0], command, env)  # noqa: S606 - the user's own command
    except OSError as exc:
        raise BadRequest(f"cannot run {command[0]!r}: {exc.strerror}") from None
    return 0  # pragma: no cover - execvpe does not return
