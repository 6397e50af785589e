"""The credential_process prompt on the requester's terminal: the request in labelled lines,
then one consistent state after another.  Through a pty against the in-test server."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from vaultd.core.model import Requester
from vaultd.errors import CodeReused
from vaultd.ipc.protocol import (
    APPROVAL_PENDING,
    CredentialsRequest,
    approval_pending_fields,
    credentials_reply,
)
from vaultd.ipc.server import Connection
from vaultd.testing.harness import read_until

from .conftest import OUTPUT, Recorder
from .test_ipc_credproc import run_credproc

REQUESTER = Requester(
    pid=4321,
    uid=0,
    executable="/usr/bin/python3.11",
    cwd="/home/u/proj\x1b[31m",
    parent_pid=4300,
    parent_command="aws sts get-caller-identity --profile asked",
    parent_executable="/usr/bin/aws",
)


MFA_SERIALS = {"named": "arn:aws:iam::123456789012:mfa/alice"}
"""The profiles whose event names their MFA device (the others send an empty serial)."""


class AskingRecorder(Recorder):
    """Profiles ``asked`` and ``named`` (issued once released) and ``fails`` (a reused code
    after release)."""

    async def _credentials(self, request: CredentialsRequest, conn: Connection) -> Any:
        expires = datetime(2025, 5, 26, 12, 34, 56, tzinfo=UTC)
        serial = MFA_SERIALS.get(request.profile, "")
        fields = approval_pending_fields("ap_2", request.profile, REQUESTER, expires, serial)
        await conn.send_event(APPROVAL_PENDING, {**fields, "methods": "code"})
        await self.release.wait()
        if request.profile == "fails":
            raise CodeReused("that code was used already: wait for the next code")
        return credentials_reply(OUTPUT)


@pytest.fixture
def recorder() -> Recorder:
    return AskingRecorder()


Read = Callable[[bytes], Awaitable[bytes]]


@asynccontextmanager
async def prompting(
    sock_path: Path, recorder: Any, serve: Any, profile: str
) -> AsyncIterator[tuple[int, Read, asyncio.Task[tuple[int, bytes, bytes]]]]:
    """The client for ``profile`` with a pty as its terminal: (pty master, read, client task)."""
    primary, secondary = os.openpty()
    seen = b""

    async def read(needle: bytes) -> bytes:
        nonlocal seen
        seen += await asyncio.wait_for(asyncio.to_thread(read_until, primary, needle), 20)
        return seen

    try:
        async with serve(sock_path, recorder):
            task = asyncio.create_task(
                run_credproc("--socket", str(sock_path), profile, stdin=secondary, tty=True)
            )
            yield primary, read, task
    finally:
        os.close(primary)
        os.close(secondary)


async def test_the_request_is_labelled_lines_then_accepted_then_issued(
    sock_path: Path, recorder: Any, serve: Any, output: bytes
) -> None:
    async with prompting(sock_path, recorder, serve, "asked") as (primary, read, task):
        await read(b"MFA code")
        os.write(primary, b"123456\n")
        assert await asyncio.wait_for(recorder.approve_codes.get(), 20) == "123456"
        await read(b"calling STS)")
        recorder.release.set()
        shown = await read(b"issued")
        assert await task == (0, output, b"")
    lines = shown.decode().replace("\r\n", "\n").splitlines()
    assert lines[lines.index("vaultd: a program asks for profile asked (approval ap_2)") :][:7] == [
        "vaultd: a program asks for profile asked (approval ap_2)",
        "  profile       asked",
        "  program       /usr/bin/aws (pid 4300)",
        "  command line  aws sts get-caller-identity --profile asked",
        "  client        /usr/bin/python3.11 (pid 4321)",
        "  directory     /home/u/proj\\x1b[31m",
        "  expires       2025-05-26T12:34:56Z",
    ]
    assert lines[-2:] == [
        "vaultd: code accepted; waiting for the credentials (calling STS)",
        "vaultd: credentials issued",
    ]
    assert "no code needed" not in shown.decode()


async def test_the_request_names_its_mfa_device_on_a_labelled_line(
    sock_path: Path, recorder: Any, serve: Any, output: bytes
) -> None:
    async with prompting(sock_path, recorder, serve, "named") as (primary, read, task):
        shown = await read(b"MFA code")
        os.write(primary, b"123456\n")
        recorder.release.set()
        await read(b"issued")
        assert await task == (0, output, b"")
    lines = shown.decode().replace("\r\n", "\n").splitlines()
    heading = lines.index("vaultd: a program asks for profile named (approval ap_2)")
    assert lines[heading + 1 : heading + 3] == [
        "  profile       named",
        "  MFA device    arn:aws:iam::123456789012:mfa/alice",
    ]


async def test_an_answer_from_elsewhere_ends_the_prompt_once(
    sock_path: Path, recorder: Any, serve: Any, output: bytes
) -> None:
    async with prompting(sock_path, recorder, serve, "asked") as (_primary, read, task):
        await read(b"MFA code (or approve elsewhere): ")
        recorder.release.set()
        shown = await read(b"needed)")
        assert await task == (0, output, b"")
    text = shown.decode()
    assert text.endswith(
        "(or approve elsewhere): \r\nvaultd: credentials issued (approved elsewhere: no code "
        "needed)\r\n"
    )
    assert "accepted" not in text


async def test_a_failure_after_the_code_is_the_last_line(
    sock_path: Path, recorder: Any, serve: Any
) -> None:
    async with prompting(sock_path, recorder, serve, "fails") as (primary, read, task):
        await read(b"MFA code")
        os.write(primary, b"123456\n")
        await read(b"calling STS)")
        recorder.release.set()
        shown = await read(b"CODE_REUSED\r\n")
        rc, out, err = await task
    assert (rc, out) == (1, b"")
    assert err == b"vaultd: CODE_REUSED: that code was used already: wait for the next code\n"
    assert shown.decode().endswith("(calling STS)\r\nvaultd: the request failed: CODE_REUSED\r\n")
