"""Packaging: one top-level module, the package-dir mapping, units, completions."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from vaultd.commands.completion import SHELLS

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_installs_only_the_vaultd_module_with_tui_and_plugins_inside(
    tmp_path: Path,
) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("vaultd-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert top == {"vaultd"}
    assert "vaultd/tui/__init__.py" in names
    assert "vaultd/plugins/__init__.py" in names
    assert "vaultd/core/default_policy.json" in names
    assert "vaultd/py.typed" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "vaultd = vaultd.cli:main" in text


def test_installed_console_script_runs() -> None:
    script = Path(sys.executable).with_name("vaultd")
    done = subprocess.run([str(script), "--version"], capture_output=True, check=True)
    assert done.stdout.startswith(b"vaultd ")


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_completions_are_current(shell: str) -> None:
    committed = (ROOT / "packaging" / "completions" / f"vaultd.{shell}").read_text()
    assert committed == SHELLS[shell](), f"run `vaultd completion {shell} > packaging/...`"


def test_bash_completion_parses() -> None:
    subprocess.run(["bash", "-n", str(ROOT / "packaging/completions/vaultd.bash")], check=True)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_systemd_units_verify(tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    units = ROOT / "packaging" / "systemd"
    done = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            "--user",
            str(units / "vaultd.socket"),
            str(units / "vaultd.service"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
        check=False,
    )
    problems = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if line.strip() and "is not executable" not in line  # ExecStart: not installed here
    ]
    assert problems == []
    service = (units / "vaultd.service").read_text()
    for needed in (
        "UMask=0177",
        "NoNewPrivileges=yes",
        "LimitCORE=0",
        "RuntimeDirectory=vaultd",
        "SystemCallFilter=@system-service",
        "AF_INET",
    ):
        assert needed in service
