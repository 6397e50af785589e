"""The import plan and the AWS-file edits it relies on (pure: text and dicts in and out)."""

from __future__ import annotations

import pytest

from vaultd.aws.config_file import comment_out_keys, parse_sections, remove_keys
from vaultd.aws.migration import PLAINTEXT_KEYS, ProfilePlan, plan_import, render_profiles
from vaultd.errors import BadRequest

SERIAL = "arn:aws:iam::123456789012:mfa/jon"
ROLE = "arn:aws:iam::123456789012:role/Admin"
KEYS = {"aws_access_key_id": "AKIAUNIT000000000001", "aws_secret_access_key": "U" * 40}


def plan(
    config: dict[str, dict[str, str]],
    creds: dict[str, dict[str, str]],
    existing: dict[str, dict[str, object]] | None = None,
) -> dict[str, ProfilePlan]:
    found = plan_import(
        config, creds, existing=existing or {}, records=(), uses_vaultd=lambda c: False
    )
    return {p.name: p for p in found}


def test_remove_keys_drops_the_lines_and_an_emptied_section_only() -> None:
    text = (
        "[a]\naws_access_key_id = X\naws_secret_access_key = Y\n\n"
        "[b]\n# keep\naws_access_key_id = Z\n"
    )
    out = remove_keys(remove_keys(text, "a", PLAINTEXT_KEYS), "b", PLAINTEXT_KEYS)
    assert out == "[b]\n# keep\n"
    assert remove_keys(out, "b", PLAINTEXT_KEYS) == out  # idempotent


def test_comment_out_keys_is_idempotent_and_keeps_comments() -> None:
    text = "# top\n[profile r]\nrole_arn = R\nregion = eu-west-1\n"
    once = comment_out_keys(text, "profile r", ("role_arn",))
    assert once == "# top\n[profile r]\n# moved to vaultd: role_arn = R\nregion = eu-west-1\n"
    assert comment_out_keys(once, "profile r", ("role_arn",)) == once


def test_a_file_that_is_not_ini_is_one_line() -> None:
    with pytest.raises(ValueError) as info:
        parse_sections("aws_access_key_id = X\n", "creds")
    assert str(info.value) == "File contains no section headers (line 1)"


def test_plan_moves_keys_and_roles_and_says_why_others_stay() -> None:
    config = {
        "jon": {"region": "eu-west-1"},
        "admin": {"source_profile": "jon", "role_arn": ROLE, "mfa_serial": SERIAL},
        "rr": {"source_profile": "admin", "role_arn": ROLE},
        "bad": {"source_profile": "jon", "role_arn": ROLE, "duration_seconds": "99999"},
        "temp": {},
    }
    creds = {"jon": KEYS, "temp": {**KEYS, "aws_session_token": "t"}, "nomfa2": KEYS}
    plans = plan(config, creds)
    assert plans["jon"].table == {"credentials": "jon", "mfa_serial": SERIAL, "region": "eu-west-1"}
    assert plans["jon"].keys is not None and "U" * 40 not in repr(plans["jon"])
    assert plans["admin"].table == {"source_profile": "jon", "mfa_serial": SERIAL, "role_arn": ROLE}
    assert plans["rr"].table is None and "cannot chain roles" in plans["rr"].note
    assert plans["bad"].table is None and "duration_seconds=99999" in plans["bad"].note
    assert plans["temp"].table is None and "temporary" in plans["temp"].note
    assert plans["nomfa2"].table is None and "no mfa_serial" in plans["nomfa2"].note
    toml = render_profiles(plans.values())
    assert toml.count("[profiles.") == 2 and 'region = "eu-west-1"' in toml


def test_plan_refuses_an_unknown_profile_and_a_bad_key_pair() -> None:
    with pytest.raises(BadRequest):
        plan_import({}, {}, existing={}, records=(), uses_vaultd=lambda c: False, only=["x"])
    bad = {"aws_access_key_id": "ASIATEMP", "aws_secret_access_key": "s"}
    plans = plan({"p": {"mfa_serial": SERIAL}}, {"p": bad})
    assert plans["p"].table is None and "not importable" in plans["p"].note


def test_an_existing_different_vaultd_profile_is_left_as_is() -> None:
    plans = plan(
        {"jon": {"mfa_serial": SERIAL}}, {"jon": KEYS}, existing={"jon": {"credentials": "z"}}
    )
    assert plans["jon"].table is None and "different profile" in plans["jon"].note
