"""Every subcommand says what it does in its own ``--help``."""

from __future__ import annotations

import argparse
import contextlib
import io

from vaultd.cli import build_parser


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append(((*path, name), sub))
                found.extend(_commands(sub, (*path, name)))
    return found


def test_every_subcommand_help_has_a_description() -> None:
    commands = _commands(build_parser())
    assert len(commands) > 30
    for path, sub in commands:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            sub.print_help()
        text = out.getvalue()
        assert sub.description, path
        assert sub.description.split(".")[0][:30] in " ".join(text.split()), path
