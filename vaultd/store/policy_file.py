"""Reading the configured access-policy file (the engine itself is pure: core/iam_policy)."""

from __future__ import annotations

from pathlib import Path

from vaultd.core.access_policy import MAX_POLICY_TEXT, Policy, default_policy, parse_policy
from vaultd.errors import ConfigError, PolicyInvalid
from vaultd.system.hardening import check_owned_not_writable


def read_policy_text(path: Path) -> str:
    """The text of a policy file, read up to the size limit.

    Checked like the config first: a symlink, another owner, or group/other write is refused
    with ``UnsafePermissions`` (whoever can write the policy decides who gets credentials).
    """
    check_owned_not_writable(path)
    try:
        with path.open(encoding="utf-8") as f:
            return f.read(MAX_POLICY_TEXT + 1)
    except UnicodeDecodeError:
        raise PolicyInvalid(f"policy file {path} is not UTF-8 text; save it as UTF-8") from None
    except OSError as e:
        raise ConfigError(
            f"cannot read policy file {path}: {e.strerror}; check the path and permissions"
        ) from None


def load_policy(policy_file: Path | None) -> Policy:
    """The policy in ``policy_file``, or the shipped default when it is None."""
    if policy_file is None:
        return default_policy()
    return parse_policy(read_policy_text(policy_file), source=f"policy file {policy_file}")
