"""`vaultd __complete WORD...`: completion candidates for the shell scripts (hidden).

The WORDs are the command line after ``vaultd``, the last one being the word under the cursor
(possibly empty). Prints the matching values, one per line: profile names (read from the config
file; no daemon, no pydantic), pending approval ids (from the daemon, waiting 1 s at most) or
shell names. :func:`vaultd.cli.main` dispatches here before building the parser, so `vaultd
--help` does not list it. A broken config or an absent daemon gives no candidates, never an
error: the shell is mid-line. Every value printed matches the protocol's name or id pattern, so
a hostile config or daemon cannot inject shell syntax into the completion scripts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from vaultd.commands.export import FORMATS
from vaultd.errors import VaultError
from vaultd.ipc.protocol import ID_RE, PROFILE_RE

SHELLS: Final = ("bash", "fish", "zsh")
APPROVALS_TIMEOUT: Final = 1.0
"""Seconds to wait for the daemon's list of pending approvals."""

VALUES: Final[Mapping[tuple[str, ...], str]] = {
    ("exec",): "profiles",
    ("export",): "profiles",
    ("login",): "profiles",
    ("clear",): "profiles",
    ("lock",): "profiles",
    ("break-glass",): "profiles",
    ("setup", "aws-profile"): "profiles",
    ("approve",): "approvals",
    ("deny",): "approvals",
    ("completion",): "shells",
}
"""The subcommands whose first positional argument completes from live data, and from what."""

OPTION_VALUES: Final[Mapping[str, tuple[str, ...]]] = {"--format": FORMATS}
TAKES_VALUE: Final = frozenset({"--region", "--format", "--reason", "--duration", "--socket"})


def candidates(words: list[str], sources: Mapping[str, Callable[[], list[str]]]) -> list[str]:
    """The values to offer for the last of ``words``; ``sources`` maps a kind to its lister."""
    *done, current = words or [""]
    if current.startswith("-"):
        return []  # options come from the scripts' static lists
    path = next((p for p in (tuple(done[:2]), tuple(done[:1])) if p in VALUES), None)
    if path is None:
        return []
    rest = done[len(path) :]
    if rest and rest[-1] in OPTION_VALUES:
        return [v for v in OPTION_VALUES[rest[-1]] if v.startswith(current)]
    typed = [
        w
        for i, w in enumerate(rest)
        if not w.startswith("-") and (i == 0 or rest[i - 1] not in TAKES_VALUE)
    ]
    if typed or "--" in rest or (rest and rest[-1] in TAKES_VALUE):
        return []
    return sorted(v for v in sources[VALUES[path]]() if v.startswith(current))


def _config() -> dict[str, object]:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    import tomllib

    explicit = os.environ.get("VAULTD_CONFIG")
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    path = Path(explicit) if explicit else Path(base) / "vaultd" / "config.toml"
    with path.open("rb") as f:
        return tomllib.load(f)


def profiles() -> list[str]:
    """Profile names in the config file (as `vaultd exec` would find them)."""
    table = _config().get("profiles")
    return [n for n in table if PROFILE_RE.fullmatch(n)] if isinstance(table, dict) else []


def approvals() -> list[str]:
    """Ids of the daemon's pending approvals."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.ipc.client import DaemonClient, default_socket_path

    config = _config()
    configured = config.get("socket")
    socket = default_socket_path()
    if not os.environ.get("VAULTD_SOCKET") and isinstance(configured, str):
        socket = Path(configured)
    ipc = config.get("ipc")
    allow_root = isinstance(ipc, dict) and ipc.get("allow_root") is True
    reply = DaemonClient(socket, timeout=APPROVALS_TIMEOUT, allow_root_daemon=allow_root).request(
        "approvals"
    )
    listed = reply.get("approvals")
    ids = [a.get("id") for a in listed if isinstance(a, dict)] if isinstance(listed, list) else []
    return [i for i in ids if isinstance(i, str) and ID_RE.fullmatch(i)]


SOURCES: Final[Mapping[str, Callable[[], list[str]]]] = {
    "profiles": profiles,
    "approvals": approvals,
    "shells": lambda: list(SHELLS),
}


def main(words: list[str]) -> int:
    """Print the candidates for ``words``; always exit 0."""

    try:
        found = candidates(words, SOURCES)
    except (VaultError, OSError, ValueError):
        found = []
    print("".join(f"{c}\n" for c in found), end="")
    return 0
