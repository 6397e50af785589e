"""Cleaning text from /proc for prompts and the audit log, and the kernel-thread fallback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from vaultd.system.procinfo import PeerProcess, describe_process, printable

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


EXEC_ON_LINE = "import os, sys; sys.stdin.readline(); os.execv('/bin/sleep', ['sleep', '30'])"


def _wait_for_exe(pid: int, suffix: str) -> None:
    deadline = time.monotonic() + 10
    while not os.readlink(f"/proc/{pid}/exe").endswith(suffix):
        assert time.monotonic() < deadline, f"pid {pid} never ran {suffix}"
        time.sleep(0.01)


def test_a_pinned_peer_that_execs_another_program_is_changed() -> None:
    """docs/threat-model.md T33: judged by what connected; an exec afterwards is noticed."""
    child = subprocess.Popen([sys.executable, "-c", EXEC_ON_LINE], stdin=subprocess.PIPE)
    try:
        peer = PeerProcess(child.pid, uid=os.getuid())
        assert peer.unchanged()
        assert peer.requester.executable == os.path.realpath(sys.executable)
        assert peer.scope == f"session:{os.getsid(child.pid)}"
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        child.stdin.flush()
        _wait_for_exe(child.pid, "sleep")
        assert not peer.unchanged()
        assert peer.requester.executable == os.path.realpath(sys.executable)  # as it connected
    finally:
        child.kill()
        child.wait()
        peer.close()


def test_a_pinned_peer_that_exits_is_changed_and_one_gone_before_is_refused() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    peer = PeerProcess(child.pid)
    assert peer.unchanged() and peer.requester.uid == os.getuid()
    child.communicate(b"")
    assert not peer.unchanged()  # exited and reaped: the pinned /proc entry reads nothing
    peer.close()
    gone = PeerProcess(child.pid)
    assert not gone.unchanged() and gone.requester.executable == ""
    gone.close()


def test_a_peer_without_a_pid_cannot_be_told_apart_and_counts_as_unchanged() -> None:
    """SO_PEERCRED gives pid 0 for a peer in another pid namespace."""
    peer = PeerProcess(0, uid=os.getuid())
    assert peer.unchanged() and peer.requester.pid == 0 and peer.scope == "process:0:0"
