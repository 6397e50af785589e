"""`vaultd setup aws-profile NAME`: point a profile in ~/.aws/config at vaultd."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from vaultd.commands._args import Subparsers, settings
from vaultd.core.model import PROFILE_NAME_RE
from vaultd.errors import BadRequest, ConfigError


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("setup", help="configure other tools to use vaultd")
    what = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    a = what.add_parser(
        "aws-profile",
        help="add or update the credential_process line of a profile in ~/.aws/config",
        description="Writes the fastest client command: the stdlib client in an isolated "
        "interpreter (`python -I -S`), imported so that its cached bytecode is used. Keeps a "
        "backup, writes atomically, and changes nothing else in the file; running it twice "
        "leaves one stanza.",
    )
    a.add_argument("name", help="the profile (as configured in vaultd)")
    a.add_argument("--config-file", help="default: $AWS_CONFIG_FILE or ~/.aws/config")
    a.set_defaults(func=run_aws_profile)


def client_command(profile: str, socket: str) -> str:
    """The credential_process command for ``profile``: stdlib client, isolated interpreter.

    The client is imported (from its directory, appended to ``sys.path`` after the standard
    library) rather than run as a script: a script is compiled on every run (~2.5 ms, a third
    of the interpreter's own start), an import loads ``__pycache__/credproc.*.pyc``.  That
    cache is checked against the source by Python itself, so an upgraded vaultd or Python
    never runs stale bytecode, and an unwritable cache only costs the compile again.
    """
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    import shlex

    from vaultd import credproc

    directory = str(Path(credproc.__file__).parent)  # an argument: no quoting inside the code
    code = (
        "import sys;sys.path.append(sys.argv.pop(1));import credproc;"
        "sys.exit(credproc.main(sys.argv[1:]))"
    )
    parts = [sys.executable, "-I", "-S", "-c", code, directory, "--socket", socket, "--", profile]
    return " ".join(shlex.quote(p) for p in parts)


def run_aws_profile(args: argparse.Namespace) -> int:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.aws.config_file import upsert_credential_process
    from vaultd.store.atomic import atomic_write

    if not PROFILE_NAME_RE.match(args.name):
        raise BadRequest(f"profile name {args.name!r} must match [A-Za-z0-9._-]{{1,64}}")
    cfg = settings()
    if args.name not in cfg.profiles:
        raise ConfigError(
            f"vaultd has no profile {args.name!r}: add [profiles.{args.name}] to its config first"
        )
    _verify_socket_directory(cfg.socket)
    path = Path(
        args.config_file or os.environ.get("AWS_CONFIG_FILE") or Path.home() / ".aws" / "config"
    )
    try:
        old = path.read_text() if path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    new = upsert_credential_process(old, args.name, client_command(args.name, str(cfg.socket)))
    _warn_if_overridden(args.name)
    if new == old:
        print(f"{path}: profile {args.name!r} already uses vaultd")
        return 0
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if old:
        shutil.copy2(path, path.with_name(path.name + ".vaultd-backup"))
    atomic_write(path, new.encode(), mode=0o600)
    print(f"{path}: profile {args.name!r} now gets credentials from vaultd")
    return 0


def _verify_socket_directory(socket: Path) -> None:
    """Write only a socket path whose directory is this user's, private (created 0700 if
    absent) and not a symlink, so a client never learns a path another user can take
    (docs/threat-model.md T29)."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.store.atomic import ensure_private_dir

    ensure_private_dir(socket.parent)


def _warn_if_overridden(profile: str) -> None:
    """Warn when the shared credentials file holds keys for ``profile``: the AWS CLI uses those
    before ``credential_process``."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    import configparser

    path = Path(
        os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or Path.home() / ".aws" / "credentials"
    )
    parser = configparser.RawConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        pass
    if parser.has_option(profile, "aws_access_key_id"):
        print(
            f"vaultd: WARNING: {path} still has keys for profile {profile!r} and the AWS CLI "
            f"uses them first: delete its [{profile}] section once `vaultd add` has sealed them",
            file=sys.stderr,
        )
