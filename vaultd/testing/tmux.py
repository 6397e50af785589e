"""A private tmux server for tests that drive a program on a terminal as a person would.

Each server has a socket of its own (``tmux -L``), so tests never see the user's sessions or
each other's.  Test use only.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


class TmuxServer:
    """A private tmux server; ``target`` is the session that ``screen`` and ``alive`` look at.
    ``env`` is the environment of every tmux call (``None``: this process's)."""

    def __init__(self, target: str, env: Mapping[str, str] | None = None) -> None:
        self.socket = f"vaultd-test-{uuid.uuid4().hex[:12]}"
        self.target = target
        self.env = env

    def run(self, *args: str) -> str:
        """One tmux command on this server; its stdout."""
        proc = subprocess.run(
            ["tmux", "-L", self.socket, *args],
            env=self.env,
            capture_output=True,
            check=True,
            timeout=10,
        )
        return proc.stdout.decode(errors="replace")

    def alive(self) -> bool:
        """Whether the target session still runs (tmux ends it with its last process)."""
        probe = ["tmux", "-L", self.socket, "has-session", "-t", self.target]
        return subprocess.run(probe, env=self.env, capture_output=True, check=False).returncode == 0

    def screen(self) -> str:
        """The target's visible text."""
        return self.run("capture-pane", "-p", "-t", self.target)

    def wait_for(self, *texts: str, absent: tuple[str, ...] = (), wait: float = 20.0) -> str:
        """Poll the pane until every one of ``texts`` shows at once (a program draws in
        pieces) and none of ``absent`` does; the screen then.  A guard against hangs, not a
        timing check."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            screen = self.screen()
            if all(t in screen for t in texts) and not any(t in screen for t in absent):
                return screen
            time.sleep(0.1)
        raise AssertionError(
            f"{texts!r} never all appeared (or {absent!r} never went); the pane shows:\n"
            f"{self.screen()}"
        )


@contextmanager
def tmux_server(target: str, env: Mapping[str, str] | None = None) -> Iterator[TmuxServer]:
    """A :class:`TmuxServer`, killed with all its sessions on exit."""
    server = TmuxServer(target, env)
    try:
        yield server
    finally:
        kill = ["tmux", "-L", server.socket, "kill-server"]
        subprocess.run(kill, env=env, capture_output=True, check=False)
