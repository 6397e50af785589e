"""`vaultd approve ID` takes the code from stdin (or the terminal, without echo), never from
argv; ``--code`` still works but warns.  Through ``cli.main`` against the in-test server."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest

from vaultd import cli
from vaultd.ipc.protocol import ApprovalsRequest, ApproveRequest, AuditTailRequest, Request
from vaultd.ipc.server import Connection

from .conftest import Recorder

PENDING = {
    "id": "abc",
    "profile": "dev",
    "action": "credential_process",
    "methods": "code",
    "state": "pending",
    "created_at": "2025-05-26T12:30:00Z",
    "expires_at": "2025-05-26T12:32:00Z",
    "requested_by": {"pid": 1, "uid": 0, "executable": "/usr/bin/aws", "cwd": "/"},
}


class ApprovingRecorder(Recorder):
    """The test handler, plus one pending approval and the audit records the daemon writes
    when the approved request succeeds (the outcome `vaultd approve` waits for)."""

    def __init__(self) -> None:
        super().__init__()
        self.audit: list[dict[str, object]] = []

    async def __call__(self, request: Request, conn: Connection) -> dict[str, object] | bytes:
        if isinstance(request, ApprovalsRequest):
            return {"approvals": [PENDING]}
        if isinstance(request, AuditTailRequest):
            return {"records": self.audit[::-1]}
        if isinstance(request, ApproveRequest):
            self.audit += [
                {"event": "approval_granted", "approval": request.id, "profile": "dev"},
                {"event": "release", "profile": "dev", "client": {"pid": 1}},
            ]
        return await super().__call__(request, conn)


@pytest.fixture
def recorder() -> Recorder:
    return ApprovingRecorder()


DEPRECATED = (
    "vaultd: WARNING: --code is deprecated: any user can read it in the process list; "
    "type the code when asked, or pipe it on stdin\n"
)


@pytest.fixture
def approve_env(sock_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "empty.toml"
    config.write_text("")
    config.chmod(0o600)
    monkeypatch.setenv("VAULTD_SOCKET", str(sock_path))
    monkeypatch.setenv("VAULTD_CONFIG", str(config))


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
    assert capsys.readouterr() == ("approved abc: credentials issued for profile dev\n", "")


@pytest.mark.usefixtures("approve_env")
async def test_code_in_argv_still_works_but_warns(
    sock_path: Path, recorder: Any, serve: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    async with serve(sock_path, recorder):
        assert await asyncio.to_thread(cli.main, ["approve", "abc", "--code", "654321"]) == 0
    assert recorder.approve_codes.get_nowait() == "654321"
    assert capsys.readouterr().err == DEPRECATED


def test_the_outcome_is_read_from_the_records_after_the_approval() -> None:
    """Another process's refusal for the same profile is not this approval's outcome; a
    release to anyone after the approval is."""
    from vaultd.commands.approvals import ISSUED, outcome

    granted = {"event": "approval_granted", "approval": "abc", "profile": "dev"}
    other = {"event": "refused", "profile": "dev", "client": {"pid": 2}, "outcome": "DENIED"}
    mine = {"event": "release", "profile": "dev", "client": {"pid": 1}}
    joined = {**mine, "client": {"pid": 3}}
    failed = {"event": "approval_failed", "approval": "abc", "outcome": "CODE_REUSED"}
    assert outcome([mine, granted, other], PENDING) is None
    assert outcome([granted, other, mine], PENDING) == ISSUED
    assert outcome([granted, joined], PENDING) == ISSUED
    assert outcome([failed], PENDING) == "CODE_REUSED"
    refused = {**mine, "event": "refused", "outcome": "MFA_REJECTED"}
    assert outcome([granted, refused], PENDING) == "MFA_REJECTED"
