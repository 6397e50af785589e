"""Prompt dialogs the daemon runs to ask for an MFA code (setting ``approval.prompt``).

For a client with a display but no terminal (an IDE, a GUI tool).  pinentry (any flavour) is
spoken to over the Assuan protocol on its stdin and stdout, as gpg-agent does; zenity, kdialog
and osascript print the code on their stdout.  The code never passes through argv or the
environment; the text shown (profile, program and pid, MFA device: no secret) may.  A dialog
that cannot run, dies or answers garbage raises ``PromptFailed``; cancel returns None.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from vaultd.core.model import CodePrompt
from vaultd.core.termtext import terminal_safe
from vaultd.errors import PromptFailed

TITLE = "vaultd"
ASSUAN_CANCELLED = "83886179"
"""gpg-error GPG_ERR_CANCELED in the pinentry source (GPG_ERR_SOURCE_PINENTRY)."""
_MAX_LINE = 4096
_GRACE = 5.0
"""Seconds a dialog may take beyond the approval's timeout before it is killed."""


def describe(prompt: CodePrompt) -> str:
    """What the dialog says: who asks, for which profile, and which device's code to type."""
    who = prompt.requester
    program = terminal_safe(who.executable or "an unknown program")
    return (
        f"{program} (pid {who.pid}) asks for AWS profile {prompt.profile}.\n"
        f"Type the 6-digit code of MFA device {terminal_safe(prompt.serial)} to approve, "
        "or cancel to deny."
    )


def environment(prompt: CodePrompt) -> dict[str, str]:
    """The daemon's environment with the client's display in place of its own."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    where = prompt.where
    if where.display and where.display != "aqua":
        env["DISPLAY"] = where.display
    if where.wayland_display:
        env["WAYLAND_DISPLAY"] = where.wayland_display
    return env


def assuan_escape(text: str) -> str:
    """Percent-escape ``%``, CR and LF for an Assuan command argument."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def assuan_unescape(data: str) -> str:
    """Undo the percent-escaping of an Assuan ``D`` line; a bad escape is garbage."""
    parts = data.split("%")
    out = [parts[0]]
    for part in parts[1:]:
        try:
            out.append(chr(int(part[:2], 16)) + part[2:])
        except ValueError:
            raise PromptFailed("pinentry sent a malformed data line") from None
    return "".join(out)


class DialogPrompter:
    """Runs the dialog a :class:`CodePrompt` names (a :class:`~vaultd.core.ports.CodePrompter`)."""

    async def ask_code(self, prompt: CodePrompt) -> str | None:
        """Show the dialog and return the code typed, or None when the user cancelled."""
        try:
            async with asyncio.timeout(prompt.timeout + _GRACE):
                if prompt.driver == "pinentry":
                    return await _pinentry(prompt)
                return await _dialog(prompt)
        except TimeoutError:
            raise PromptFailed(f"{prompt.driver} did not answer in time") from None


async def _spawn(argv: list[str], prompt: CodePrompt) -> asyncio.subprocess.Process:
    try:
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=environment(prompt),
            start_new_session=True,
            limit=_MAX_LINE,
        )
    except OSError as exc:
        raise PromptFailed(
            f"cannot run {argv[0]} for approval.prompt = {prompt.driver!r}: "
            f"{exc.strerror or exc}; install it or choose another prompt"
        ) from None


async def _ended(proc: asyncio.subprocess.Process) -> None:
    """Make sure the dialog is gone (it is killed when the approval ended first)."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    await proc.wait()


async def _pinentry(prompt: CodePrompt) -> str | None:
    proc = await _spawn(["pinentry"], prompt)
    try:
        assuan = _Assuan(proc)
        await assuan.reply()  # the greeting
        for command in (
            f"SETTITLE {TITLE}",
            f"SETDESC {assuan_escape(describe(prompt))}",
            "SETPROMPT MFA code:",
            "SETOK Approve",
            "SETCANCEL Deny",
            f"SETTIMEOUT {max(1, int(prompt.timeout))}",
        ):
            await assuan.call(command)
        code = await assuan.call("GETPIN", cancel_ok=True)
        if code is not None:
            with contextlib.suppress(PromptFailed, OSError):
                await assuan.call("BYE")
        return code
    finally:
        await _ended(proc)


class _Assuan:
    """The client side of an Assuan conversation with a pinentry on its stdin and stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdin is not None and proc.stdout is not None  # noqa: S101 - piped
        self._in, self._out = proc.stdin, proc.stdout

    async def call(self, command: str, *, cancel_ok: bool = False) -> str | None:
        """Send one command; its data (``D`` lines), "" for none, None for a cancel."""
        self._in.write(command.encode() + b"\n")
        try:
            await self._in.drain()
        except OSError:
            raise PromptFailed("pinentry exited before it was asked for the code") from None
        return await self.reply(cancel_ok=cancel_ok)

    async def reply(self, *, cancel_ok: bool = False) -> str | None:
        data: list[str] = []
        while True:
            line = await self._line()
            if line == "OK" or line.startswith("OK "):
                return "".join(data)
            if line.startswith("D "):
                data.append(assuan_unescape(line[2:]))
            elif line.startswith("ERR "):
                if cancel_ok and line.split()[1:2] == [ASSUAN_CANCELLED]:
                    return None
                raise PromptFailed(f"pinentry refused: {terminal_safe(line[4:80])}")
            elif not line.startswith(("S ", "#")) and line not in ("S", "#"):
                raise PromptFailed("pinentry answered something that is not the Assuan protocol")

    async def _line(self) -> str:
        try:
            raw = await self._out.readline()
        except ValueError:  # longer than the stream's limit
            raise PromptFailed("pinentry sent an over-long line") from None
        if not raw.endswith(b"\n"):
            raise PromptFailed("pinentry exited before it answered")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise PromptFailed("pinentry sent a line that is not UTF-8") from None


def _dialog_argv(prompt: CodePrompt) -> list[str]:
    """The command line of a dialog that prints the code on stdout (no secret in it)."""
    text, seconds = describe(prompt), max(1, int(prompt.timeout))
    if prompt.driver == "zenity":
        return ["zenity", "--entry", "--hide-text", f"--title={TITLE}", f"--text={text}",
                f"--timeout={seconds}"]  # fmt: skip
    if prompt.driver == "kdialog":
        return ["kdialog", "--title", TITLE, "--password", text]
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    script = (
        f'text returned of (display dialog "{quoted}" default answer "" with hidden answer '
        f'with title "{TITLE}" giving up after {seconds})'
    )
    return ["osascript", "-e", script]


async def _dialog(prompt: CodePrompt) -> str | None:
    proc = await _spawn(_dialog_argv(prompt), prompt)
    try:
        assert proc.stdin is not None and proc.stdout is not None  # noqa: S101 - piped
        proc.stdin.close()
        out = await proc.stdout.read(_MAX_LINE)
        status = await proc.wait()
    finally:
        await _ended(proc)
    if status == 1:  # Cancel (zenity, kdialog; osascript's "User canceled")
        return None
    if status != 0:
        raise PromptFailed(f"{prompt.driver} failed (exit status {status})")
    lines = out.decode("utf-8", "replace").splitlines()
    if len(lines) != 1:
        raise PromptFailed(f"{prompt.driver} answered {len(lines)} lines instead of the code")
    return lines[0].strip()
