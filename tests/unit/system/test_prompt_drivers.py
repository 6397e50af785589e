"""The prompt dialogs of approval.prompt, each run as a stand-in executable on PATH.

No graphical desktop exists here, so each dialog (pinentry speaking Assuan, zenity, kdialog,
osascript) is a small script that records its argv, environment display and stdin, and answers
as the real one does: the code on stdout (or in an Assuan ``D`` line), exit 1 on cancel.  The
real pinentry-curses is driven in tests/integration/daemon/test_prompt_pinentry.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from vaultd.core.model import ClientDisplay, CodePrompt, Requester
from vaultd.errors import PromptFailed
from vaultd.system.prompt_drivers import DialogPrompter, assuan_escape, assuan_unescape

CODE = "493817"

PINENTRY = r"""
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
mode = open(os.path.join(here, "mode")).read()
seen = {"argv": sys.argv[1:], "display": os.environ.get("DISPLAY"),
        "wayland": os.environ.get("WAYLAND_DISPLAY"), "commands": []}
def say(line):
    sys.stdout.write(line + "\n"); sys.stdout.flush()
def record():
    with open(os.path.join(here, "seen.json"), "w") as f: json.dump(seen, f)
say("OK Pleased to meet you")
for line in sys.stdin:
    command = line.rstrip("\n")
    seen["commands"].append(command)
    record()
    if mode == "die":
        sys.exit(3)
    if mode == "garbage":
        say("HELLO THERE"); continue
    if command == "GETPIN":
        if mode == "cancel":
            say("ERR 83886179 Operation cancelled <Pinentry>")
        else:
            say("D " + mode.replace("%", "%25")); say("OK")
    elif command == "BYE":
        say("OK closing connection"); break
    else:
        say("OK")
"""

DIALOG = r"""
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
mode = open(os.path.join(here, "mode")).read()
with open(os.path.join(here, "seen.json"), "w") as f:
    json.dump({"argv": [os.path.basename(sys.argv[0])] + sys.argv[1:],
               "display": os.environ.get("DISPLAY"), "stdin": sys.stdin.read()}, f)
if mode == "cancel":
    sys.exit(1)
if mode == "die":
    sys.exit(9)
sys.stdout.write(mode + "\n")
"""


def stand_in(bin_dir: Path, name: str, mode: str) -> None:
    """Install ``name`` on ``bin_dir`` answering as ``mode`` (a code, cancel, die, garbage)."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / name
    body = PINENTRY if name == "pinentry" else DIALOG
    script.write_text(f"#!{sys.executable}\n{body}")
    script.chmod(0o755)
    (bin_dir / "mode").write_text(mode)


def seen(bin_dir: Path) -> dict[str, object]:
    out: dict[str, object] = json.loads((bin_dir / "seen.json").read_text())
    return out


def prompt(driver: str) -> CodePrompt:
    who = Requester(pid=4242, uid=1000, executable="/usr/bin/code")
    where = ClientDisplay(display=":7", wayland_display="")
    return CodePrompt(driver, "ap1", "dev", "arn:aws:iam::1:mfa/u", who, where, 30.0)


def ask(driver: str) -> str | None:
    return asyncio.run(DialogPrompter().ask_code(prompt(driver)))


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "bin"
    monkeypatch.setenv("PATH", f"{path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DISPLAY", ":0")  # the daemon's own display is replaced by the client's
    return path


def test_pinentry_speaks_assuan_and_returns_the_code(bin_dir: Path) -> None:
    stand_in(bin_dir, "pinentry", CODE)
    assert ask("pinentry") == CODE
    got = seen(bin_dir)
    assert got["argv"] == [] and got["display"] == ":7" and got["wayland"] is None
    commands = got["commands"]
    assert isinstance(commands, list)
    assert [c.split(" ")[0] for c in commands] == [
        "SETTITLE", "SETDESC", "SETPROMPT", "SETOK", "SETCANCEL", "SETTIMEOUT", "GETPIN", "BYE",
    ]  # fmt: skip
    desc = assuan_unescape(commands[1].removeprefix("SETDESC "))
    assert "/usr/bin/code (pid 4242)" in desc and "profile dev" in desc
    assert "arn:aws:iam::1:mfa/u" in desc and "\n" in desc and "%0A" in commands[1]


def test_pinentry_cancel_is_none(bin_dir: Path) -> None:
    stand_in(bin_dir, "pinentry", "cancel")
    assert ask("pinentry") is None


@pytest.mark.parametrize(
    ("mode", "message"),
    [("die", "pinentry exited"), ("garbage", "not the Assuan protocol")],
)
def test_pinentry_failures_are_prompt_failed(bin_dir: Path, mode: str, message: str) -> None:
    stand_in(bin_dir, "pinentry", mode)
    with pytest.raises(PromptFailed, match=message):
        ask("pinentry")


def test_a_missing_dialog_says_what_to_do(bin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(PromptFailed, match=r"cannot run zenity .* install it"):
        ask("zenity")


@pytest.mark.parametrize("driver", ["zenity", "kdialog", "osascript"])
def test_dialogs_answer_on_stdout_and_the_code_is_never_in_argv(bin_dir: Path, driver: str) -> None:
    stand_in(bin_dir, driver, CODE)
    assert ask(driver) == CODE
    got = seen(bin_dir)
    argv = got["argv"]
    assert isinstance(argv, list) and argv[0] == driver
    assert CODE not in " ".join(argv) and got["stdin"] == ""
    assert "/usr/bin/code (pid 4242)" in " ".join(argv)
    assert got["display"] == ":7"


@pytest.mark.parametrize("driver", ["zenity", "kdialog", "osascript"])
def test_dialog_cancel_is_none_and_a_crash_is_prompt_failed(bin_dir: Path, driver: str) -> None:
    stand_in(bin_dir, driver, "cancel")
    assert ask(driver) is None
    stand_in(bin_dir, driver, "die")
    with pytest.raises(PromptFailed, match="exit status 9"):
        ask(driver)


def test_exact_argv_of_each_dialog(bin_dir: Path) -> None:
    for driver in ("zenity", "kdialog", "osascript"):
        stand_in(bin_dir, driver, CODE)
        ask(driver)
        argv = seen(bin_dir)["argv"]
        assert isinstance(argv, list)
        if driver == "zenity":
            assert argv[1:4] == ["--entry", "--hide-text", "--title=vaultd"]
        elif driver == "kdialog":
            assert argv[1:4] == ["--title", "vaultd", "--password"]
        else:
            assert argv[1] == "-e" and "with hidden answer" in argv[2]


def test_assuan_escaping_round_trips() -> None:
    text = "50% of\r\nlines"
    assert assuan_escape(text) == "50%25 of%0D%0Alines"
    assert assuan_unescape(assuan_escape(text)) == text
    with pytest.raises(PromptFailed, match="malformed data line"):
        assuan_unescape("12%zz")
