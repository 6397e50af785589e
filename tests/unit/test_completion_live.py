"""Completions from live data, through each shell's own completion machinery.

bash and zsh run interactively on a pty (readline / zle complete on a real TAB); fish answers
`complete -C`. Profile names come from the config file; `vaultd __complete` is what the scripts
call. A shell that is not installed is skipped (apt-get install zsh fish).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vaultd.commands.complete import candidates
from vaultd.testing.harness import read_until, spawn_in_pty

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "packaging" / "completions"
CONFIG = """
[profiles.dev]
credentials = "dev"
[profiles.admin]
source_profile = "dev"
[profiles."x$(touch pwned)"]
credentials = "dev"
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    bindir = Path(sys.executable).parent  # the installed `vaultd` script
    return {
        "PATH": f"{bindir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "VAULTD_CONFIG": str(config),
        "VAULTD_SOCKET": str(tmp_path / "absent.sock"),
        "TERM": "dumb",
    }


def complete(env: dict[str, str], *words: str) -> list[str]:
    done = subprocess.run(
        ["vaultd", "__complete", *words], env=env, capture_output=True, check=True, timeout=30
    )
    assert done.stderr == b""
    return done.stdout.decode().splitlines()


def test_the_hidden_command_lists_profiles_and_drops_odd_names(env: dict[str, str]) -> None:
    assert complete(env, "exec", "") == ["admin", "dev"]
    assert complete(env, "setup", "aws-profile", "d") == ["dev"]
    assert complete(env, "completion", "") == ["bash", "fish", "zsh"]
    assert complete(env, "approve", "") == []  # no daemon: nothing, and no error
    bad = {**env, "VAULTD_CONFIG": "/nonexistent/config.toml"}
    assert complete(bad, "exec", "") == []
    help_text = subprocess.run(["vaultd", "--help"], env=env, capture_output=True, check=True)
    assert b"__complete" not in help_text.stdout


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["exec", ""], ["a", "b"]),
        (["exec", "--region", "eu-west-1", ""], ["a", "b"]),
        (["exec", "--region", ""], []),
        (["exec", "a", ""], []),
        (["exec", "a", "--", ""], []),
        (["exec", "-"], []),
        (["export", "--format", ""], ["env", "json", "ini"]),
        (["export", "--format", "j"], ["json"]),
        (["approve", ""], ["ap1"]),
        (["status", ""], []),
        ([""], []),
        ([], []),
    ],
)
def test_which_word_completes_from_what(words: list[str], expected: list[str]) -> None:
    sources = {"profiles": lambda: ["b", "a"], "approvals": lambda: ["ap1"], "shells": list}
    assert candidates(words, sources) == expected


def _needs(shell: str) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed (apt-get install {shell})")


def _type_on_pty(argv: list[str], env: dict[str, str], setup: str, line: str) -> str:
    """Start an interactive shell on a pty, run ``setup``, type ``line``; the screen text."""
    proc, master = spawn_in_pty(argv, env, controlling=False)
    try:
        os.write(master, setup.encode() + b"; echo READY''\n")
        read_until(master, b"READY\r\n")
        os.write(master, line.encode())
        seen = read_until(master, b"admin")
        os.write(master, b"\x15exit\n")  # Ctrl-U drops the line
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return seen.decode(errors="replace")


def test_bash_completes_profile_names_on_tab(env: dict[str, str]) -> None:
    screen = _type_on_pty(
        ["bash", "--norc", "--noprofile", "-i"],
        {**env, "PS1": "$ "},
        f"source {SCRIPTS / 'vaultd.bash'}",
        "vaultd exec a\t",
    )
    assert "vaultd exec admin" in screen, screen
    assert "pwned" not in screen


def test_zsh_completes_profile_names_on_tab(env: dict[str, str], tmp_path: Path) -> None:
    _needs("zsh")
    fpath = tmp_path / "zfunc"
    fpath.mkdir()
    shutil.copy(SCRIPTS / "vaultd.zsh", fpath / "_vaultd")
    screen = _type_on_pty(
        ["zsh", "-f", "-i"],
        {**env, "PS1": "$ "},
        f"fpath=({fpath} $fpath); autoload -U compinit; compinit -u -D",
        "vaultd exec a\t",
    )
    assert "vaultd exec admin" in screen, screen


def test_fish_completes_profiles_and_shells(env: dict[str, str]) -> None:
    _needs("fish")
    script = SCRIPTS / "vaultd.fish"

    def fish_complete(line: str) -> list[str]:
        done = subprocess.run(
            ["fish", "--no-config", "-c", f"source {script}; complete -C '{line}'"],
            env=env,
            capture_output=True,
            check=True,
            timeout=60,
        )
        return [w.split("\t")[0] for w in done.stdout.decode().splitlines()]

    assert {"admin", "dev"} <= set(fish_complete("vaultd exec "))
    assert fish_complete("vaultd exec a") == ["admin"]
    assert {"bash", "fish", "zsh"} <= set(fish_complete("vaultd completion "))
