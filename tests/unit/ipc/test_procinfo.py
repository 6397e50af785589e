"""/proc facts for prompts and the audit log: cleaning, the kernel-thread fallback, and the peer
pinned when it connected (pidfd, without PIDFD_GET_INFO, and /proc alone)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vaultd.system import procinfo
from vaultd.system.procinfo import ParentCache, PeerProcess, describe_process, printable

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
CONNECT_THEN_EXEC = (
    "import os, socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
    "sys.stdin.readline(); os.execv('/bin/sleep', ['sleep', '30'])"
)


def _wait_for_exe(pid: int, suffix: str) -> None:
    deadline = time.monotonic() + 10
    while not os.readlink(f"/proc/{pid}/exe").endswith(suffix):
        assert time.monotonic() < deadline, f"pid {pid} never ran {suffix}"
        time.sleep(0.01)


def _exec_child(child: subprocess.Popen[bytes]) -> None:
    assert child.stdin is not None
    child.stdin.write(b"go\n")
    child.stdin.flush()
    _wait_for_exe(child.pid, "sleep")
    _wait_for_command_line(child.pid)


def _wait_for_command_line(pid: int) -> None:
    """Right after an exec the kernel shows an empty command line for a moment."""
    deadline = time.monotonic() + 10
    while not Path(f"/proc/{pid}/cmdline").read_bytes():
        assert time.monotonic() < deadline, f"pid {pid} never showed a command line"
        time.sleep(0.01)


@pytest.fixture(params=["pidfd", "no-pidfd-info", "proc-only"])
def kernel(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """This kernel, and (by switching vaultd's own probes: no older kernel is at hand) one
    without PIDFD_GET_INFO (before 6.13) and one without pidfds at all (before 5.3, or a
    seccomp filter that refuses them)."""
    if request.param == "no-pidfd-info":
        monkeypatch.setattr(procinfo, "_parent_from_pidfd", lambda pidfd: None)
    elif request.param == "proc-only":
        monkeypatch.setattr(procinfo, "_PIDFDS", False)
    return str(request.param)


def test_a_pinned_peer_that_execs_another_program_is_changed(kernel: str) -> None:
    """docs/threat-model.md T33: judged by what connected; an exec afterwards is noticed."""
    # A session of its own: where this runner's session leader is in an outer pid namespace
    # (CI containers), getsid() is 0 and the scope would be the process's own.
    child = subprocess.Popen(
        [sys.executable, "-c", EXEC_ON_LINE], stdin=subprocess.PIPE, start_new_session=True
    )
    peer = PeerProcess(child.pid, uid=os.getuid())
    try:
        assert peer.unchanged() and peer.pinned
        assert peer.requester.executable == os.path.realpath(sys.executable)
        assert peer.requester.parent_pid == os.getpid()
        assert peer.scope == f"session:{child.pid}"
        _exec_child(child)
        assert not peer.unchanged()
        assert peer.requester.executable == os.path.realpath(sys.executable)  # as it connected
    finally:
        child.kill()
        child.wait()
        peer.close()


def test_the_kernel_names_the_process_that_connected(tmp_path: Path) -> None:
    """With the accepted socket, the pidfd is the connecting process's own (SO_PEERPIDFD)."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "s"))
    server.listen()
    child = subprocess.Popen(
        [sys.executable, "-c", CONNECT_THEN_EXEC, str(tmp_path / "s")], stdin=subprocess.PIPE
    )
    conn, _ = server.accept()
    peer = PeerProcess(child.pid, uid=os.getuid(), sock=conn)
    try:
        assert peer.pinned and peer.unchanged()
        assert peer.requester.executable == os.path.realpath(sys.executable)
        _exec_child(child)
        assert not peer.unchanged()
    finally:
        child.kill()
        child.wait()
        peer.close()
        conn.close()
        server.close()


def test_a_pinned_peer_that_exits_is_changed_and_one_gone_before_is_refused(kernel: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    peer = PeerProcess(child.pid)
    assert peer.unchanged() and peer.requester.uid == os.getuid()
    child.communicate(b"")
    assert not peer.unchanged()  # exited and reaped
    peer.close()
    gone = PeerProcess(child.pid, uid=os.getuid())
    assert not gone.pinned and not gone.unchanged()
    assert (gone.requester.executable, gone.requester.uid) == ("", os.getuid())
    gone.close()


def test_a_peer_without_a_pid_cannot_be_told_apart_and_counts_as_unchanged() -> None:
    """SO_PEERCRED gives pid 0 for a peer in another pid namespace."""
    peer = PeerProcess(0, uid=os.getuid())
    assert peer.unchanged() and peer.pinned
    assert peer.requester.pid == 0 and peer.scope == "process:0:0"


def test_a_parent_is_read_once_and_again_after_it_execs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent's command line is read once per parent process; an exec is a new one."""
    reads: list[int] = []
    real = procinfo._command
    monkeypatch.setattr(procinfo, "_command", lambda pid: reads.append(pid) or real(pid))
    parent = subprocess.Popen([sys.executable, "-c", EXEC_ON_LINE], stdin=subprocess.PIPE)
    cache = ParentCache()
    _wait_for_command_line(parent.pid)
    try:
        first = cache.facts(parent.pid)
        assert cache.facts(parent.pid) == first and reads == [parent.pid]
        assert first[1] == os.path.realpath(sys.executable) and "-c" in first[0]
        _exec_child(parent)
        assert cache.facts(parent.pid) == ("sleep 30", os.path.realpath("/bin/sleep"))
        assert reads == [parent.pid, parent.pid] and len(cache) == 1

    finally:
        parent.kill()
        parent.wait()
        cache.close()
    assert cache.facts(parent.pid) == ("", "") and len(cache) == 0  # gone: nothing kept


def test_the_parent_cache_keeps_at_most_its_size() -> None:
    parents = [subprocess.Popen(["sleep", "30"]) for _ in range(3)]
    cache = ParentCache(size=2)
    try:
        for parent in parents:
            _wait_for_command_line(parent.pid)
            assert cache.facts(parent.pid) == ("sleep 30", os.path.realpath("/bin/sleep"))
        assert len(cache) == 2
    finally:
        for parent in parents:
            parent.kill()
            parent.wait()
        cache.close()
    assert len(cache) == 0


def test_a_parent_caught_mid_exec_is_not_kept() -> None:
    """A command line read in the moment after an exec is empty: shown as the name, and read
    again next time rather than kept for the parent's life."""
    for _ in range(20):
        parent = subprocess.Popen(["sleep", "30"])
        cache = ParentCache()
        try:
            command, _ = cache.facts(parent.pid)
            assert command == "sleep 30" or (command == "[sleep]" and len(cache) == 0)
        finally:
            parent.kill()
            parent.wait()
            cache.close()
