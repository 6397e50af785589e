"""`vaultd import aws-config`: move profiles and plaintext keys from the AWS files into vaultd.

Dry run by default (prints the plan).  With ``--apply``, in this order, each step idempotent
and each file replaced atomically, so a run killed anywhere is finished by running it again:
seal the key pairs found (as `vaultd add` does), append the vaultd profiles to its config,
point each profile's ``credential_process`` in ``~/.aws/config`` at vaultd (aws-vault's keys
commented out there), and only then, after a test call through the daemon has returned a
session and the user confirmed (or ``--remove-plaintext``), write a 0600 backup and remove
the plaintext keys from the AWS files.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from vaultd.commands._args import Subparsers, settings
from vaultd.commands.add import store_key_pair
from vaultd.commands.setup import client_command
from vaultd.core.model import RecordKind, mask_key
from vaultd.errors import ConfigError

if TYPE_CHECKING:
    from vaultd.app import OpenStore
    from vaultd.aws.migration import ProfilePlan
    from vaultd.settings import Settings

step_hook: Callable[[str], None] | None = None
"""Test seam called after each step (``sealed``, ``vaultd-config``, ``aws-config``,
``tested``, ``backup``, ``plaintext-removed``); production code leaves it ``None``."""

BACKUP_INFIX = ".vaultd-backup-"


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("import", help="move existing AWS profiles and keys into vaultd")
    what = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    a = what.add_parser(
        "aws-config",
        help="import ~/.aws/config and ~/.aws/credentials (aws-vault style profiles)",
        description="Reads $AWS_CONFIG_FILE (~/.aws/config) and $AWS_SHARED_CREDENTIALS_FILE "
        "(~/.aws/credentials) and prints what each profile becomes. With --apply it seals the "
        "static keys, adds the profiles to the vaultd config and points their "
        "credential_process at vaultd; the plaintext keys are removed only after a test call "
        "through the daemon succeeds and you confirm (or --remove-plaintext), keeping a 0600 "
        "backup to shred. Safe to run again: done steps are skipped.",
    )
    a.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="NAME",
        help="only this profile (and its source profile); repeatable",
    )
    a.add_argument("--apply", action="store_true", help="write (default: print the plan only)")
    a.add_argument(
        "--remove-plaintext",
        action="store_true",
        help="remove the plaintext keys after a successful test call without asking",
    )
    a.set_defaults(func=run)


def _step(name: str) -> None:
    if step_hook is not None:
        step_hook(name)


def aws_paths() -> tuple[Path, Path]:
    """``~/.aws/config`` and ``~/.aws/credentials``, or the files the AWS variables name."""
    home = Path.home() / ".aws"
    config = os.environ.get("AWS_CONFIG_FILE") or home / "config"
    credentials = os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or home / "credentials"
    return Path(config), Path(credentials)


def _read(path: Path) -> str:
    try:
        return path.read_text() if path.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None


def _sections(path: Path, text: str) -> dict[str, dict[str, str]]:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.aws.config_file import parse_sections

    try:
        return parse_sections(text, str(path))
    except ValueError as exc:
        raise ConfigError(f"cannot parse {path}: {exc}; fix the file and run again") from None


def _write(path: Path, text: str) -> None:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.store.atomic import atomic_write

    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(path, text.encode(), mode=0o600)


def _remove_leftovers(paths: tuple[Path, ...]) -> None:
    """Remove temp files (they may hold keys) that a killed earlier run left beside ``paths``."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.store.atomic import TEMP_SUFFIX, cleanup_temp_files

    for path in paths:
        if path.parent.is_dir():
            cleanup_temp_files(path)
            for temp in path.parent.glob(f".{path.name}{BACKUP_INFIX}*{TEMP_SUFFIX}"):
                temp.unlink()


def _plan(
    cfg: Settings, config_path: Path, creds_path: Path, args: argparse.Namespace, records: set[str]
) -> list[ProfilePlan]:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.aws.config_file import config_profiles
    from vaultd.aws.migration import plan_import

    existing = {
        n: p.model_dump(exclude_defaults=True, mode="json") for n, p in cfg.profiles.items()
    }
    return plan_import(
        config_profiles(_sections(config_path, _read(config_path))),
        _sections(creds_path, _read(creds_path)),
        existing=existing,
        records=records,
        uses_vaultd=lambda cmd: any(
            cmd.strip() == client_command(n, str(cfg.socket)) for n in existing
        ),
        only=args.profile,
    )


def _show(plans: list[ProfilePlan]) -> None:
    if not plans:
        print("no AWS profiles found")
    for plan in plans:
        if plan.table is None:
            print(f"  {plan.name}: left alone: {plan.note}")
            continue
        fields = ", ".join(f"{k}={v}" for k, v in plan.table.items())
        state = " (already in vaultd)" if plan.in_vaultd else ""
        print(f"  {plan.name}: vaultd profile {fields}{state}")
        if plan.keys is not None:
            print(f"      plaintext key pair {mask_key(plan.keys.access_key_id)} found")
        if plan.note:
            print(f"      {plan.note}")


def run(args: argparse.Namespace) -> int:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.app import opened_vault
    from vaultd.settings import default_config_path

    cfg = settings()
    config_path, creds_path = aws_paths()
    if not args.apply:
        _show(_plan(cfg, config_path, creds_path, args, set()))
        print("dry run: nothing was written; run again with --apply to import")
        return 0
    _remove_leftovers((config_path, creds_path, default_config_path()))
    with opened_vault(cfg) as vault:
        stored = set(vault.store.names(RecordKind.KEY_PAIR))
        plans = _plan(cfg, config_path, creds_path, args, stored)
        _show(plans)
        sealed = _seal(vault, plans, stored)
    _append_profiles(plans)
    _point_at_vaultd(cfg, config_path, plans)
    if sealed:
        _remove_plaintext(cfg, (config_path, creds_path), sealed, args.remove_plaintext)
    return 0


def _seal(vault: OpenStore, plans: list[ProfilePlan], stored: set[str]) -> list[str]:
    """Seal the key pairs found; the profiles whose plaintext keys now have a sealed twin."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    import hmac

    from vaultd.core.records import encode_key_pair

    sealed = []
    for plan in plans:
        record = plan.record
        if plan.keys is None or record is None:
            continue
        wanted = encode_key_pair(plan.keys)
        if record not in stored:
            store_key_pair(vault, record, plan.keys)
            print(
                f"sealed {plan.name!r} as record {record!r} ({mask_key(plan.keys.access_key_id)})"
            )
            _step("sealed")
        elif not hmac.compare_digest(vault.store.get(RecordKind.KEY_PAIR, record), wanted):
            print(
                f"record {record!r} already holds another key pair: the plaintext keys of "
                f"{plan.name!r} stay (`vaultd add {record} --replace` to replace it)"
            )
            continue
        sealed.append(plan.name)
    return sealed


def _append_profiles(plans: list[ProfilePlan]) -> None:
    """Append the new ``[profiles.NAME]`` tables to the vaultd config (comments kept)."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    import tomllib

    from vaultd.aws.migration import render_profiles
    from vaultd.settings import default_config_path

    tables = render_profiles(plans)
    if not tables:
        return
    path = default_config_path()
    old = _read(path)
    new = old + ("\n" if old and not old.endswith("\n") else "") + tables
    try:
        tomllib.loads(new)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} would not be valid TOML ({exc}): nothing written") from None
    _write(path, new)
    print(f"{path}: added {tables.count('[profiles.')} profile(s)")
    _step("vaultd-config")


def _point_at_vaultd(cfg: Settings, path: Path, plans: list[ProfilePlan]) -> None:
    """Set each imported profile's ``credential_process`` to vaultd's client."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.aws.config_file import comment_out_keys, section_name, upsert_credential_process
    from vaultd.aws.migration import ROLE_KEYS

    old = new = _read(path)
    for plan in plans:
        if plan.table is not None:
            section = section_name(plan.name)
            new = comment_out_keys(new, section, ("source_profile", *ROLE_KEYS))
            new = upsert_credential_process(
                new, plan.name, client_command(plan.name, str(cfg.socket))
            )
    if new != old:
        _write(path, new)
        print(f"{path}: the imported profiles now get credentials from vaultd")
    _step("aws-config")


def _remove_plaintext(
    cfg: Settings, paths: tuple[Path, Path], names: list[str], confirmed: bool
) -> None:
    """Test each sealed profile through the daemon, then remove its plaintext keys."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.aws.config_file import remove_keys, section_name
    from vaultd.aws.container_endpoint import fetch_from_daemon
    from vaultd.aws.migration import PLAINTEXT_KEYS

    config_path, creds_path = paths
    edits: dict[Path, tuple[str, str]] = {}
    for path in (config_path, creds_path):
        old = new = _read(path)
        for name in names:
            section = section_name(name) if path == config_path else name
            new = remove_keys(new, section, PLAINTEXT_KEYS)
        if new != old:
            edits[path] = (old, new)
    if not edits:
        return
    for name in names:
        print(f"test call: asking the daemon for a session of {name!r} ...")
        try:
            fetch_from_daemon(str(cfg.socket), name)
        except Exception:
            print(
                "the plaintext keys stay until a test call succeeds: start (or restart) the "
                "daemon so it reads the new profiles, then run this again"
            )
            raise
    _step("tested")
    if not confirmed and not _confirm(names):
        print("plaintext keys kept; run again with --remove-plaintext to remove them")
        return
    for path, (old, new) in edits.items():
        digest = hashlib.sha256(old.encode()).hexdigest()[:12]
        backup = path.with_name(f"{path.name}{BACKUP_INFIX}{digest}")
        _write(backup, old)
        _step("backup")
        _write(path, new)
        _step("plaintext-removed")
        print(
            f"{path}: plaintext keys removed. The backup {backup} still holds them: once "
            f"`aws sts get-caller-identity --profile {names[0]}` works, delete it with "
            f"`shred -u {backup}`"
        )


def _confirm(names: list[str]) -> bool:
    if not sys.stdin.isatty():
        return False
    answer = input(f"remove the plaintext keys of {', '.join(names)} from the AWS files? [y/N] ")
    return answer.strip().lower() in ("y", "yes")
