"""`vaultd doctor`'s look at the AWS CLI's files: every profile whose `credential_process`
points at vaultd must run (the interpreter and script exist), name a vaultd profile, and not
be overridden by static keys in `~/.aws/credentials` (which the AWS CLI reads first)."""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vaultd.settings import Settings

Finding = tuple[str, str, str]
"""(status, label, detail) as `vaultd doctor` prints them."""


def aws_files() -> tuple[Path, Path]:
    """The AWS CLI's config and credentials files, as it finds them."""
    home = Path.home() / ".aws"
    config = os.environ.get("AWS_CONFIG_FILE") or str(home / "config")
    credentials = os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or str(home / "credentials")
    return Path(config).expanduser(), Path(credentials).expanduser()


def _read(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False)
    if path.is_file():
        parser.read(path, encoding="utf-8")
    return parser


def _missing_program(argv: list[str]) -> str | None:
    """What in ``argv`` does not exist: the program, or a script path it is given."""
    program = argv[0]
    found = program if os.path.isabs(program) else shutil.which(program)
    if not found or not os.access(found, os.X_OK):
        return program
    for arg in argv[1:]:
        if arg.endswith(".py") and not os.path.isfile(arg):
            return arg
    return None


def _vaultd_profile(argv: list[str]) -> str | None:
    """The vaultd profile a credential_process command asks for (its last argument)."""
    return argv[-1] if len(argv) > 1 and not argv[-1].startswith("-") else None


def check_aws_config(cfg: Settings) -> list[Finding]:
    """Findings for every AWS CLI profile whose ``credential_process`` runs vaultd."""
    config_path, credentials_path = aws_files()
    config, credentials = _read(config_path), _read(credentials_path)
    findings: list[Finding] = []
    for section in config.sections():
        command = config.get(section, "credential_process", fallback="")
        if "vaultd" not in command and "credproc" not in command:
            continue
        name = section.removeprefix("profile ").strip()
        label = f"~/.aws/config [{section}]"
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            findings.append(("FAIL", label, f"credential_process does not parse: {exc}"))
            continue
        missing = _missing_program(argv)
        wanted = _vaultd_profile(argv)
        if missing:
            detail = f"{missing} does not exist: re-run `vaultd setup aws-profile {name}`"
        elif wanted is None or wanted not in cfg.profiles:
            detail = f"asks for vaultd profile {wanted!r}, which the vaultd config does not have"
        elif credentials.has_option(name, "aws_access_key_id"):
            detail = (
                f"{credentials_path} [{name}] holds static keys, and the AWS CLI uses them "
                "before credential_process: delete them there (keep them sealed in vaultd)"
            )
        else:
            findings.append(("ok", label, f"runs vaultd for profile {wanted!r}"))
            continue
        findings.append(("FAIL", label, detail))
    if not findings:
        findings.append(
            (
                "info",
                "~/.aws/config",
                f"no profile in {config_path} uses vaultd yet: `vaultd setup aws-profile NAME`",
            )
        )
    return findings
