"""Cleaning text from /proc for prompts and the audit log, and the kernel-thread fallback."""

from __future__ import annotations

import os
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from vaultd.system.procinfo import describe_process, printable

UNSAFE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def reference(text: str, limit: int) -> str:
    """The rule spelled out: each character of an unsafe category becomes ``?``, then the cut."""
    cleaned = "".join("?" if unicodedata.category(c) in UNSAFE else c for c in text[: limit + 1])
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


@given(st.text(st.characters(exclude_categories=()), max_size=60), st.integers(1, 80))
def test_printable_matches_the_category_rule(text: str, limit: int) -> None:
    assert printable(text, limit) == reference(text, limit)


def test_spaces_stay_and_line_separators_and_bidi_controls_go() -> None:
    assert printable("a\u00a0b\u3000c d", 50) == "a\u00a0b\u3000c d"
    assert printable("a\u2028b\u2029c\u202ed\ufeff", 50) == "a?b?c?d?"
    assert printable("\udcff\U000e0001x", 50) == "??x"


def test_a_kernel_thread_parent_is_named_from_its_comm() -> None:
    """kthreadd (pid 2) has no command line and no executable: its children show ``[comm]``."""
    children = [
        int(entry)
        for entry in os.listdir("/proc")
        if entry.isdigit() and describe_process(int(entry)).parent_pid == 2
    ]
    if not children:  # a container without kernel threads in its pid namespace
        assert describe_process(2).executable == ""
        return
    view = describe_process(children[0])
    assert view.parent_command.startswith("[") and view.parent_command.endswith("]")
    assert view.executable == "" and view.parent_executable == ""
