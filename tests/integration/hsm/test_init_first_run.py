"""`vaultd init` on a machine with no config: it finds the modules and tokens, writes a
commented config, names the next commands; `vaultd pin file` and a second `vaultd init` finish
the set-up (SoftHSM2 token, real subprocesses)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from vaultd.testing.harness import read_until, spawn_in_pty
from vaultd.testing.softhsm import SoftHsmToken, create_token, find_softhsm_module

pytestmark = pytest.mark.hsm


@pytest.fixture
def token(tmp_path: Path) -> SoftHsmToken:
    if find_softhsm_module() is None or shutil.which("softhsm2-util") is None:
        pytest.skip("SoftHSM2 is not installed (apt-get install softhsm2)")
    return create_token(tmp_path / "hsm", label="first-run")


def _env(tmp_path: Path, token: SoftHsmToken) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULTD_", "AWS_"))}
    env.update(
        HOME=str(tmp_path / "home"),
        XDG_CONFIG_HOME=str(tmp_path / "home" / ".config"),
        XDG_DATA_HOME=str(tmp_path / "home" / ".local" / "share"),
        SOFTHSM2_CONF=str(token.conf_path),
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",  # headless: no OS keyring
    )
    return env


def _vaultd(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vaultd", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _config(tmp_path: Path) -> Path:
    return tmp_path / "home" / ".config" / "vaultd" / "config.toml"


def test_scripted_first_run_writes_a_config_and_the_next_init_creates_the_key(
    tmp_path: Path, token: SoftHsmToken
) -> None:
    env = _env(tmp_path, token)
    pin_file = tmp_path / "home" / ".config" / "vaultd" / "pin"
    done = _vaultd(
        env, "init", "--module", token.module_path, "--token", "first-run",
        "--pin-source", f"file:{pin_file}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    config = _config(tmp_path)
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    parsed = tomllib.loads(config.read_text())
    assert parsed["pkcs11"] == {
        "module": token.module_path,
        "token_label": "first-run",
        "pin_source": f"file:{pin_file}",
    }
    assert "# [profiles.work]" in config.read_text()
    assert f"vaultd pin file {pin_file}" in done.stdout
    assert "vaultd init" in done.stdout and "vaultd add work" in done.stdout

    stored = _vaultd(env, "pin", "file", str(pin_file), stdin=token.user_pin + "\n")
    assert stored.returncode == 0, stored.stderr
    assert stat.S_IMODE(pin_file.stat().st_mode) == 0o600
    assert token.user_pin not in stored.stdout + stored.stderr

    created = _vaultd(env, "init")
    assert created.returncode == 0, created.stderr
    assert "ready (AES-256, sensitive, never extractable)" in created.stdout
    again = _vaultd(env, "init", "--module", token.module_path)
    assert again.returncode != 0 and "first run only" in again.stderr


def test_a_script_without_flags_is_told_what_was_found(tmp_path: Path, token: SoftHsmToken) -> None:
    done = _vaultd(_env(tmp_path, token), "init")
    assert done.returncode != 0
    assert "pass --module: modules found here:" in done.stderr
    assert "SoftHSM2" in done.stderr
    assert not _config(tmp_path).exists()


def test_an_unknown_token_label_lists_the_tokens(tmp_path: Path, token: SoftHsmToken) -> None:
    done = _vaultd(_env(tmp_path, token), "init", "--module", token.module_path)
    assert done.returncode != 0
    assert "pass --token: tokens in" in done.stderr and "first-run" in done.stderr


def test_keyring_pin_source_on_a_headless_machine_is_refused_with_the_fix(
    tmp_path: Path, token: SoftHsmToken
) -> None:
    env = _env(tmp_path, token)
    done = _vaultd(
        env, "init", "--module", token.module_path, "--token", "first-run",
        "--pin-source", "keyring",
    )  # fmt: skip
    assert done.returncode != 0
    assert "no OS keyring is usable here" in done.stderr and "--pin-source prompt" in done.stderr
    assert not _config(tmp_path).exists()


def test_on_a_terminal_init_asks_by_number(tmp_path: Path, token: SoftHsmToken) -> None:
    env = _env(tmp_path, token)
    proc, master = spawn_in_pty([sys.executable, "-m", "vaultd", "init"], env)
    shown = read_until(master, b"choose")
    assert b"PKCS#11 module:" in shown and b"SoftHSM2" in shown
    line = next(x for x in shown.splitlines() if b"SoftHSM2" in x)
    os.write(master, line.split(b")")[0].strip() + b"\n")
    assert b"first-run" in read_until(master, b"choose")
    os.write(master, b"1\n")
    shown = read_until(master, b"choose")
    assert b"no OS keyring is usable here" in shown and b"prompt" in shown
    os.write(master, b"2\n")  # the options are [pin file, prompt]
    assert proc.wait(timeout=60) == 0
    out = read_until(master, b"vaultd add")
    os.close(master)
    assert b"wrote" in out
    parsed = tomllib.loads(_config(tmp_path).read_text())
    assert parsed["pkcs11"]["pin_source"] == "prompt"
    assert parsed["pkcs11"]["token_label"] == "first-run"


def test_init_with_a_keyring_pin_source_on_a_headless_machine_names_the_fix(
    tmp_path: Path, token: SoftHsmToken
) -> None:
    env = _env(tmp_path, token)
    config = _config(tmp_path)
    config.parent.mkdir(parents=True, mode=0o700)
    config.write_text(
        f'[pkcs11]\nmodule = "{token.module_path}"\ntoken_label = "first-run"\n'
        'pin_source = "keyring"\n'
    )
    config.chmod(0o600)
    done = _vaultd(env, "init")
    assert done.returncode != 0
    assert "CONFIG_INVALID" in done.stderr and "no OS keyring is usable" in done.stderr
    assert "vaultd pin file PATH" in done.stderr
    assert "Traceback" not in done.stderr


def test_pin_file_refuses_a_relative_path_and_an_empty_pin(
    tmp_path: Path, token: SoftHsmToken
) -> None:
    env = _env(tmp_path, token)
    relative = _vaultd(env, "pin", "file", "pin.txt", stdin="1234\n")
    assert relative.returncode != 0 and "absolute path" in relative.stderr
    empty = _vaultd(env, "pin", "file", str(tmp_path / "pin"), stdin="\n")
    assert empty.returncode != 0 and "empty" in empty.stderr
    assert not (tmp_path / "pin").exists()


def _configured(tmp_path: Path, token: SoftHsmToken, pin_source: str) -> Path:
    config = _config(tmp_path)
    config.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    config.write_text(
        f'[pkcs11]\nmodule = "{token.module_path}"\ntoken_label = "first-run"\n'
        f'pin_source = "{pin_source}"\n'
    )
    config.chmod(0o600)
    return config


def test_pin_store_writes_the_pin_file_pin_source_names(
    tmp_path: Path, token: SoftHsmToken
) -> None:
    """The Quickstart's `vaultd pin store` after a headless first run chose a PIN file."""
    env = _env(tmp_path, token)
    pin_file = tmp_path / "home" / ".config" / "vaultd" / "pin"
    _configured(tmp_path, token, f"file:{pin_file}")
    stored = _vaultd(env, "pin", "store", stdin=token.user_pin + "\n")
    assert stored.returncode == 0, stored.stderr
    assert f"to {pin_file} (0600), where pin_source reads it" in stored.stdout
    assert pin_file.read_text() == token.user_pin
    assert stat.S_IMODE(pin_file.stat().st_mode) == 0o600
    created = _vaultd(env, "init")
    assert created.returncode == 0, created.stderr


@pytest.mark.parametrize(
    ("pin_source", "expected"),
    [
        ("keyring", 'CONFIG_INVALID: pin_source = "keyring" but no OS keyring is usable here'),
        ("prompt", 'BAD_REQUEST: pin_source = "prompt": vaultd asks for the token PIN at each'),
    ],
)
def test_pin_store_with_nowhere_to_store_says_so_before_asking(
    tmp_path: Path, token: SoftHsmToken, pin_source: str, expected: str
) -> None:
    env = _env(tmp_path, token)
    _configured(tmp_path, token, pin_source)
    done = _vaultd(env, "pin", "store", stdin=token.user_pin + "\n")
    assert done.returncode != 0
    assert expected in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert token.user_pin not in done.stdout + done.stderr
