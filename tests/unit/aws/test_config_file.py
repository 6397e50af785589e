"""Editing ~/.aws/config: one stanza, every other line untouched, idempotent."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vaultd.aws.config_file import upsert_credential_process

EXISTING = """# my settings
[default]
region = eu-west-1

[profile work]
region = us-east-1 ; keep me
credential_process = old-tool work
output = json

[profile other]
role_arn = arn:aws:iam::123456789012:role/X
"""


def test_replaces_the_line_in_place_and_keeps_the_rest() -> None:
    new = upsert_credential_process(EXISTING, "work", "vaultd credential-process work")
    old_lines, new_lines = EXISTING.splitlines(), new.splitlines()
    assert len(old_lines) == len(new_lines)
    changed = [(a, b) for a, b in zip(old_lines, new_lines, strict=True) if a != b]
    assert changed == [
        (
            "credential_process = old-tool work",
            "credential_process = vaultd credential-process work",
        )
    ]


def test_adds_the_line_under_an_existing_section() -> None:
    new = upsert_credential_process(EXISTING, "other", "cmd other")
    assert "[profile other]\ncredential_process = cmd other\nrole_arn" in new
    assert new.replace("credential_process = cmd other\n", "") == EXISTING


def test_appends_a_new_section_and_is_idempotent() -> None:
    once = upsert_credential_process(EXISTING, "new", "cmd new")
    assert once.startswith(EXISTING)
    assert once.endswith("\n[profile new]\ncredential_process = cmd new\n")
    assert upsert_credential_process(once, "new", "cmd new") == once


def test_default_profile_and_empty_file() -> None:
    assert upsert_credential_process("", "default", "c") == "[default]\ncredential_process = c\n"
    no_newline = upsert_credential_process("[profile a]", "a", "c")
    assert no_newline == "[profile a]\ncredential_process = c\n"


def test_multiline_command_refused() -> None:
    with pytest.raises(ValueError):
        upsert_credential_process("", "a", "c\n[profile evil]")


@given(
    st.lists(
        st.sampled_from(
            ["[profile a]", "[profile b]", "region = x", "# c", "", "credential_process = y"]
        ),
        max_size=12,
    ),
    st.sampled_from(["a", "b", "c"]),
)
def test_exactly_one_line_for_the_profile_whatever_the_file(lines: list[str], name: str) -> None:
    text = "\n".join(lines) + "\n"
    once = upsert_credential_process(text, name, "vaultd-cmd")
    twice = upsert_credential_process(once, name, "vaultd-cmd")
    assert twice == once
    assert once.count("credential_process = vaultd-cmd") == 1
