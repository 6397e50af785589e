"""`vaultd approve ID` takes the code from stdin (or the terminal, without echo), never from
argv; ``--code`` still works but warns.  Through ``cli.main`` against the in-test server."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest

from vaultd import cli

DEPRECATED = (
    "vaultd: WARNING: --code is deprecated: any user can read it in the process list; "
    "type the code when asked, or pipe it on stdin\n"
)


@pytest.fixture
def approve_env(sock_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULTD_SOCKET", str(sock_path))
    monkeypatch.delenv("VAULTD_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


@pytest.mark.usefixtures("approve_env")
async def test_the_code_is_read_from_stdin(
    sock_path: Path,
    recorder: Any,
    serve: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("123456\n"))
    async with serve(sock_path, recorder):
        assert await asyncio.to_thread(cli.main, ["approve", "abc"]) == 0
    assert recorder.approve_codes.get_nowait() == "123456"
    assert capsys.readouterr() == ("approved abc\n", "")


@pytest.mark.usefixtures("approve_env")
async def test_code_in_argv_still_works_but_warns(
    sock_path: Path, recorder: Any, serve: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    async with serve(sock_path, recorder):
        assert await asyncio.to_thread(cli.main, ["approve", "abc", "--code", "654321"]) == 0
    assert recorder.approve_codes.get_nowait() == "654321"
    assert capsys.readouterr().err == DEPRECATED
