"""`vaultd exec [--server] [--duration S] [--region R] PROFILE [-- CMD ARGS]`: run CMD
(default: ``$SHELL``) with the profile's session; `vaultd exec --env|--json|--ini PROFILE`
prints it (`vaultd export`)."""

from __future__ import annotations

import argparse
import json
import os
from types import FrameType
from typing import TYPE_CHECKING, Final

from vaultd.commands._args import Subparsers, settings
from vaultd.commands.export import FORMATS, export_text
from vaultd.errors import BadRequest

if TYPE_CHECKING:
    from vaultd.settings import Settings

MARKER: Final = "VAULTD_PROFILE"
"""Set in the environment of every `vaultd exec` command; exec refuses to nest inside one."""


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "exec",
        help="run a command with the session credentials in its environment",
        description="Session credentials only (never the long-lived keys) are set as "
        "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN and "
        "AWS_CREDENTIAL_EXPIRATION; AWS_PROFILE is removed so the command does not loop "
        "back through credential_process. With --server, the command instead gets "
        "AWS_CONTAINER_CREDENTIALS_FULL_URI and AWS_CONTAINER_AUTHORIZATION_TOKEN: a "
        "127.0.0.1 endpoint in this process serves the session to the SDK's container "
        "provider and fetches a new one from the daemon (which may ask for approval) once "
        "fewer than 15 minutes remain. The command runs as a child; SIGINT and SIGTERM are "
        "forwarded and its exit status is returned. Credentials in ~/.aws (a [default] "
        "profile) still take precedence over the endpoint in the SDKs. With no command it "
        "opens $SHELL (as aws-vault does); VAULTD_PROFILE marks the session, and exec refuses "
        "to run inside one.",
    )
    p.add_argument(
        "--server",
        action="store_true",
        help="serve the session on a local container-credentials endpoint instead of "
        "putting it in the command's environment",
    )
    p.add_argument(
        "--duration",
        type=int,
        metavar="SECONDS",
        help="ask STS for a session of this length instead of the profile's (within what AWS "
        "allows for the profile; cached apart from the profile's own session)",
    )
    p.add_argument(
        "--region",
        help="export AWS_REGION and AWS_DEFAULT_REGION (default: the profile's region, if set)",
    )
    printed = p.add_mutually_exclusive_group()
    for fmt in FORMATS:
        printed.add_argument(
            f"--{fmt}",
            dest="format",
            action="store_const",
            const=fmt,
            help=f"print the session instead of running a command: `vaultd export --format {fmt}`",
        )
    p.add_argument("profile")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    p.set_defaults(func=run)


def session_environment(output: bytes, profile: str, base: dict[str, str]) -> dict[str, str]:
    """The child's environment: ``base`` plus the session from credential_process JSON."""

    creds = json.loads(output)
    env = {k: v for k, v in base.items() if k not in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE")}
    env.update(
        AWS_ACCESS_KEY_ID=creds["AccessKeyId"],
        AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"],
        AWS_SESSION_TOKEN=creds["SessionToken"],
        AWS_CREDENTIAL_EXPIRATION=creds["Expiration"],
    )
    env[MARKER] = profile
    return env


def checked_profile(name: str) -> str:
    """``name`` if it is a profile name (it goes into a request frame); else ``BadRequest``."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.ipc.protocol import PROFILE_RE

    if not PROFILE_RE.fullmatch(name):
        raise BadRequest(f"{name!r} is not a profile name: 1 to 64 of A-Z a-z 0-9 . _ -")
    return name


def chosen_region(cfg: Settings, profile: str, region: str | None) -> str | None:
    """``region``, else the profile's region, else None; ``BadRequest`` if not a region name."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.settings import REGION_RE

    configured = cfg.profiles.get(profile)
    chosen = region or (configured.region if configured else None)
    if chosen is not None and not REGION_RE.match(chosen):
        raise BadRequest(f"--region {chosen!r} is not an AWS region name such as eu-west-1")
    return chosen


def region_environment(
    cfg: Settings, profile: str, region: str | None, base: dict[str, str]
) -> dict[str, str]:
    """``base`` with ``AWS_REGION`` and ``AWS_DEFAULT_REGION`` from ``region`` or the profile."""
    chosen = chosen_region(cfg, profile, region)
    if chosen is None:
        return base
    return {**base, "AWS_REGION": chosen, "AWS_DEFAULT_REGION": chosen}


def run(args: argparse.Namespace) -> int:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.aws.container_endpoint import fetch_from_daemon

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.format is not None:
        return _print_session(args, command)
    nested = os.environ.get(MARKER)
    if nested:
        raise BadRequest(
            f"already in a vaultd exec session ({MARKER}={nested}): exit that shell first"
        )
    checked_profile(args.profile)
    command = command or [os.environ.get("SHELL") or "/bin/sh"]
    cfg = settings()
    base = region_environment(cfg, args.profile, args.region, dict(os.environ))
    socket = str(cfg.socket)
    if args.server:
        return _run_with_server(args.profile, command, socket, base, args.duration)
    output = fetch_from_daemon(socket, args.profile, duration=args.duration)
    env = session_environment(output, args.profile, base)
    try:
        os.execvpe(command[0], command, env)  # noqa: S606 - the user's own command
    except OSError as exc:
        raise BadRequest(f"cannot run {command[0]!r}: {exc.strerror}") from None
    return 0  # pragma: no cover - execvpe does not return


def _print_session(args: argparse.Namespace, command: list[str]) -> int:
    """`vaultd exec --env|--json|--ini PROFILE`: `vaultd export --format` under another name."""

    if command:
        raise BadRequest(f"--{args.format} prints the session and runs nothing: drop the command")
    if args.server:
        raise BadRequest(f"--{args.format} prints the session: it does not go with --server")
    if args.duration is not None:
        raise BadRequest(
            f"--{args.format} prints the profile's own session: it does not go with --duration"
        )
    print(export_text(args.profile, args.format, args.region), end="")
    return 0


def _run_with_server(
    profile: str, command: list[str], socket: str, base: dict[str, str], duration: int | None
) -> int:
    """Serve the session on 127.0.0.1 while ``command`` runs; return its exit status."""

    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.aws.container_endpoint import CredentialServer, fetch_from_daemon

    server = CredentialServer(lambda: fetch_from_daemon(socket, profile, duration=duration))
    try:
        server.source.current()  # the first approval happens before the command starts
        server.start()
        return supervise(command, server.environment(base, profile))
    finally:
        server.stop()


def supervise(command: list[str], env: dict[str, str]) -> int:
    """Run ``command`` as a child, forwarding SIGINT and SIGTERM; 128+N if killed by signal N."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    import signal
    import subprocess

    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: FrameType | None) -> None:
        if child is not None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            child = subprocess.Popen(command, env=env)  # noqa: S603 - the user's own command
        except OSError as exc:
            raise BadRequest(f"cannot run {command[0]!r}: {exc.strerror}") from None
        status = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - status if status < 0 else status
