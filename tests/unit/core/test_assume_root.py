"""The pure AssumeRoot checks and the vaultd:AssumeRoot policy action (issue 15)."""

from __future__ import annotations

import json

import pytest

from vaultd.core import assume_root
from vaultd.core.access_policy import ContextValue, default_policy, enforce, parse_policy
from vaultd.errors import ConfigError, PolicyDenied

AUDIT = "arn:aws:iam::aws:policy/root-task/IAMAuditRootUserCredentials"


@pytest.mark.parametrize("task", ["IAMAuditRootUserCredentials", AUDIT])
def test_a_task_is_its_short_name_or_its_arn(task: str) -> None:
    assert assume_root.task_arn(task) == AUDIT


@pytest.mark.parametrize(
    "task", ["IAMEverything", "arn:aws:iam::aws:policy/AdministratorAccess", AUDIT.lower(), ""]
)
def test_other_tasks_are_refused_naming_the_five(task: str) -> None:
    with pytest.raises(ConfigError, match="S3UnlockBucketPolicy"):
        assume_root.task_arn(task)


def test_every_task_has_a_one_line_description() -> None:
    assert len(assume_root.ROOT_TASKS) == 5
    assert all(0 < len(text) <= 70 and "\n" not in text for text in assume_root.ROOT_TASKS.values())


@pytest.mark.parametrize(
    ("account", "duration", "needle"),
    [
        ("11112222333", 900, "12-digit"),
        ("123456789012", 900, "management account"),
        ("111122223333", 901, "0-900"),
        ("111122223333", -1, "0-900"),
    ],
)
def test_bad_targets(account: str, duration: int, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        assume_root.check_target(account, duration, "arn:aws:iam::123456789012:mfa/admin")


def test_good_targets_pass() -> None:
    for duration in (0, 900):
        assume_root.check_target("111122223333", duration, "arn:aws:iam::123456789012:mfa/x")
    assume_root.check_target("111122223333", 900, "GAHT12345678")  # a hardware serial


def test_root_mfa_devices_are_recognised() -> None:
    assert assume_root.is_root_mfa("arn:aws:iam::123456789012:mfa/root-account-mfa-device")
    assert not assume_root.is_root_mfa("arn:aws:iam::123456789012:mfa/alice")


CONTEXT: dict[str, ContextValue] = {
    "vaultd:Profile": "member-root",
    "vaultd:MultiFactorAuthPresent": True,
}


def _context(task: str, account: str = "111122223333") -> dict[str, ContextValue]:
    return {**CONTEXT, "vaultd:RootTask": task, "vaultd:TargetAccount": account}


def test_the_default_policy_allows_assume_root_after_mfa() -> None:
    enforce(default_policy(), "vaultd:AssumeRoot", "profile/member-root", _context("x"))
    no_mfa: dict[str, ContextValue] = {**_context("x"), "vaultd:MultiFactorAuthPresent": False}
    with pytest.raises(PolicyDenied):
        enforce(default_policy(), "vaultd:AssumeRoot", "profile/member-root", no_mfa)


def test_a_policy_can_allow_only_the_audit_task_in_one_account() -> None:
    policy = parse_policy(json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "vaultd:AssumeRoot", "Resource": "profile/*",
        "Condition": {"StringEquals": {"vaultd:RootTask": "IAMAuditRootUserCredentials",
                                       "vaultd:TargetAccount": "111122223333"}},
    }]}))  # fmt: skip
    enforce(
        policy, "vaultd:AssumeRoot", "profile/member-root", _context("IAMAuditRootUserCredentials")
    )
    for context in (
        _context("IAMDeleteRootUserCredentials"),
        _context("IAMAuditRootUserCredentials", "444455556666"),
    ):
        with pytest.raises(PolicyDenied):
            enforce(policy, "vaultd:AssumeRoot", "profile/member-root", context)
