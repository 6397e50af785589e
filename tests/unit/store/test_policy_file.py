"""The access-policy file is checked like the config: owner, mode, no symlink (issue 13 Low 11)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vaultd.errors import UnsafePermissions
from vaultd.store.policy_file import load_policy

POLICY = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "vaultd:*", \
"Resource": "*"}]}'


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.json"
    path.write_text(POLICY)
    return path


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o640, 0o644])
def test_private_or_read_only_for_others_is_loaded(policy: Path, mode: int) -> None:
    policy.chmod(mode)
    assert load_policy(policy) is not None


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666, 0o660])
def test_writable_by_group_or_others_is_refused(policy: Path, mode: int) -> None:
    policy.chmod(mode)
    with pytest.raises(UnsafePermissions, match=r"writable by group or others: `chmod go-w ") as e:
        load_policy(policy)
    assert e.value.path == str(policy)


def test_a_symlink_is_refused(policy: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.json"
    link.symlink_to(policy)
    with pytest.raises(UnsafePermissions, match="is a symlink"):
        load_policy(link)


def test_another_owner_is_refused(policy: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown to another uid needs root")
    os.chown(policy, 65534, 65534)
    with pytest.raises(UnsafePermissions, match="is owned by uid 65534, not you"):
        load_policy(policy)
