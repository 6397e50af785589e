"""The stdlib client finds the socket the daemon serves on: ``socket`` in the config file.

Real sockets and the in-test server of ``conftest.py``; the client runs as
``python -I -S credproc.py`` in a child process with the environment each test sets.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from vaultd import credproc

from .test_ipc_credproc import CREDPROC, run_credproc, run_listing_modules


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``$XDG_CONFIG_HOME``; no socket or config named in the environment, and a
    runtime dir where no daemon listens (the default would miss)."""
    home = tmp_path / "config"
    (home / "vaultd").mkdir(parents=True)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.delenv("VAULTD_SOCKET", raising=False)
    monkeypatch.delenv("VAULTD_CONFIG", raising=False)
    return home


def write_config(home: Path, text: str, mode: int = 0o600) -> Path:
    path = home / "vaultd" / "config.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


async def test_the_socket_set_in_the_config_file_is_used(
    config_home: Path, sock_path: Path, recorder: Any, serve: Any, output: bytes
) -> None:
    write_config(config_home, f'# vaultd\ndata_dir = "/x"\nsocket = "{sock_path}"\n\n[ipc]\n')
    async with serve(sock_path, recorder):
        assert await run_credproc("dev") == (0, output, b"")


async def test_vaultd_config_names_the_file_and_vaultd_socket_wins(
    config_home: Path,
    tmp_path: Path,
    sock_path: Path,
    recorder: Any,
    serve: Any,
    output: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    named = tmp_path / "named.toml"
    named.write_text(f"socket = '{sock_path}'  # a literal string\n")
    named.chmod(0o600)
    write_config(config_home, 'socket = "/nowhere/vaultd.sock"\n')
    monkeypatch.setenv("VAULTD_CONFIG", str(named))
    async with serve(sock_path, recorder):
        assert await run_credproc("dev") == (0, output, b"")
        write_config(config_home, f'socket = "{tmp_path}/nowhere.sock"\n')
        monkeypatch.setenv("VAULTD_CONFIG", str(config_home / "vaultd" / "config.toml"))
        monkeypatch.setenv("VAULTD_SOCKET", str(sock_path))
        assert await run_credproc("dev") == (0, output, b"")


async def test_the_common_config_loads_neither_tomllib_nor_json(
    config_home: Path, sock_path: Path, recorder: Any, serve: Any, output: bytes
) -> None:
    write_config(config_home, f'socket = "{sock_path}"\n[pkcs11]\nmodule = """x"""\n')
    async with serve(sock_path, recorder):
        rc, out, modules = await run_listing_modules("dev")
    assert (rc, out) == (0, output)
    assert not modules & {"tomllib", "json", "os", "re", "pwd"}


BAD_CONFIGS = [
    ("group-writable", 'socket = "/run/s"\n', 0o620, "UNSAFE_PERMISSIONS", "chmod go-w"),
    ("relative socket", 'socket = "run/vaultd.sock"\n', 0o600, "CONFIG_INVALID", "absolute"),
    ("empty socket", 'socket = ""\n', 0o600, "CONFIG_INVALID", "absolute"),
    ("not a string", "socket = 5\n", 0o600, "CONFIG_INVALID", "must be a string"),
    ("not TOML", 'socket = "/run/s" x\n', 0o600, "CONFIG_INVALID", "cannot read config"),
    ("twice", 'socket = "/a"\nsocket = "/b"\n', 0o600, "CONFIG_INVALID", "cannot read config"),
    ("not UTF-8", 'socket = "/run/\xff"\n', 0o600, "CONFIG_INVALID", "not UTF-8"),
]


@pytest.mark.parametrize(
    ("text", "mode", "code", "words"),
    [case[1:] for case in BAD_CONFIGS],
    ids=[case[0] for case in BAD_CONFIGS],
)
async def test_a_bad_config_is_one_line_and_nothing_is_sent(
    config_home: Path,
    sock_path: Path,
    recorder: Any,
    serve: Any,
    text: str,
    mode: int,
    code: str,
    words: str,
) -> None:
    path = write_config(config_home, "")
    path.write_bytes(text.encode("latin-1"))
    path.chmod(mode)
    async with serve(sock_path, recorder):
        rc, out, err = await run_credproc("dev")
    assert (rc, out) == (1, b"")
    assert err.startswith(f"vaultd: {code}: ".encode()) and err.count(b"\n") == 1
    assert words.encode() in err
    assert recorder.requests == []


@pytest.mark.parametrize("kind", ["symlink", "directory"])
async def test_a_config_that_is_no_regular_file_is_refused(
    config_home: Path, tmp_path: Path, kind: str
) -> None:
    path = config_home / "vaultd" / "config.toml"
    if kind == "symlink":
        target = tmp_path / "target.toml"
        target.write_text('socket = "/run/s"\n')
        target.chmod(0o600)
        path.symlink_to(target)
    else:
        path.mkdir(mode=0o700)
    rc, out, err = await run_credproc("dev")
    assert (rc, out) == (1, b"")
    expected = b"UNSAFE_PERMISSIONS: " if kind == "symlink" else b"CONFIG_INVALID: "
    assert expected in err and err.count(b"\n") == 1


def test_the_client_refuses_a_config_with_the_daemons_words(config_home: Path) -> None:
    """`vaultd status` (the settings loader) and the client print the same line."""
    write_config(config_home, 'socket = "/run/s"\n', mode=0o660)
    env = dict(os.environ)
    daemon_side = subprocess.run(
        [sys.executable, "-m", "vaultd", "status"], env=env, capture_output=True, check=False
    )
    client_side = subprocess.run(
        [sys.executable, "-I", "-S", CREDPROC, "dev"], env=env, capture_output=True, check=False
    )
    assert daemon_side.stderr.startswith(b"vaultd: UNSAFE_PERMISSIONS: ")
    assert client_side.stderr == daemon_side.stderr


SOCKET_FORMS = {
    "plain": 'socket = "/run/a.sock"\n',
    "no spaces, crlf": 'socket="/run/a.sock"\r\n',
    "literal and comment": "  socket = '/run/a b.sock'   # mine\n",
    "quoted key": '"socket" = "/run/a.sock"\n',
    "commented out": '# socket = "/run/no.sock"\n',
    "only in a table": '[ipc]\nsocket = "/run/no.sock"\n',
    "after the tables": 'data_dir = "/d"\n[ipc]\nallow_root = false\n[profiles.socket]\n',
    "escaped": 'socket = "/run/\\u0061.sock"\n',
    "tab inside": 'socket = "/run/a\t.sock"\n',
    "multi-line string before": 'data_dir = """\nsocket = "/run/no.sock"\n"""\n',
    "literal backslash": "socket = '/run/a\\\\b.sock'\n",
    "none": "",
}


@pytest.mark.parametrize("text", SOCKET_FORMS.values(), ids=SOCKET_FORMS.keys())
def test_the_line_reader_agrees_with_tomllib(text: str) -> None:
    assert credproc.config_socket(text, "c.toml") == tomllib.loads(text).get("socket")


async def test_help_names_the_command(config_home: Path) -> None:
    for flag in ("--help", "-h"):
        proc = subprocess.run(
            [sys.executable, "-m", "vaultd", "credential-process", flag],
            capture_output=True,
            check=False,
        )
        assert proc.returncode == 0 and proc.stderr == b""
        assert proc.stdout.startswith(b"usage: vaultd credential-process [--socket PATH]")
        assert b"credproc.py" not in proc.stdout and b"config file" in proc.stdout
    rc, out, err = await run_credproc("--bogus")
    assert (rc, out) == (2, b"") and err.startswith(b"usage: vaultd credential-process ")
