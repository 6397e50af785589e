"""The ``vaultd`` command.

``credential-process`` is dispatched before argparse is imported: it runs on every AWS CLI
call and stays stdlib-only.  Every other subcommand lives in ``vaultd.commands.<name>`` and
imports its heavy dependencies only when it runs.  This is the one place where a
:class:`~vaultd.errors.VaultError` becomes an exit status and one stderr line.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

# Subcommand modules, in the order `vaultd --help` lists them.
COMMAND_MODULES = (
    "init",
    "pin",
    "add",
    "list",
    "remove",
    "keys",
    "rekey",
    "serve",
    "credproc_help",
    "approvals",
    "status",
    "lock",
    "clear",
    "exec",
    "export",
    "import_aws",
    "login",
    "fido2",
    "mfa",
    "breakglass",
    "tui",
    "policy",
    "audit",
    "rotate",
    "setup",
    "plugins",
    "config_reference",
    "completion",
    "doctor",
    "demo",
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["credential-process"]:
        from vaultd import credproc

        return credproc.main(args[1:])
    if args[:1] == ["__complete"]:  # hidden: the completion scripts call it on every TAB
        from vaultd.commands import complete

        return complete.main(args[1:])
    return _run(args)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser with every subcommand registered."""
    import argparse
    import importlib

    from vaultd import __version__

    parser = argparse.ArgumentParser(
        prog="vaultd",
        description="A local AWS credential vault: keys sealed by a PKCS#11 token, "
        "sessions released only after MFA.",
    )
    parser.add_argument("--version", action="version", version=f"vaultd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"vaultd.commands.{name}").add_parser(sub)
    _describe(parser)
    return parser


def _describe(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand's own ``--help`` its one-line summary where it has no longer text."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            summaries = {choice.dest: choice.help for choice in action._choices_actions}
            for name, subparser in action.choices.items():
                summary = summaries.get(name)
                if subparser.description is None and summary:
                    subparser.description = summary[0].upper() + summary[1:] + "."
                _describe(subparser)


def _run(args: list[str]) -> int:
    from vaultd.core.termtext import terminal_safe
    from vaultd.errors import VaultError

    ns = build_parser().parse_args(args)
    try:
        status: int = ns.func(ns)
    except VaultError as exc:  # the message may quote STS or a plugin: no terminal escapes
        print(f"vaultd: {exc.code}: {terminal_safe(exc)}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("vaultd: interrupted", file=sys.stderr)
        return 130
    return status
