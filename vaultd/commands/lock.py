"""`vaultd lock [--seal]` and `vaultd unlock`.

A token at its final PIN try (``HSM_PIN_FINAL_TRY``) is unlocked only after the person types
back, on the terminal, the words of the daemon's one-time challenge (docs/threat-model.md T9,
:mod:`vaultd.core.final_try`). There is deliberately no option for it, and a stdin that is not a
terminal is refused.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from vaultd.commands._args import Subparsers, settings
from vaultd.commands._client import client
from vaultd.errors import BadRequest, HsmPinFinalTry

if TYPE_CHECKING:
    from vaultd.errors import HsmPinFinalTry
    from vaultd.settings import Settings


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("lock", help="drop every cached session and pending approval")
    p.add_argument("--seal", action="store_true", help="also log out of the token")
    p.add_argument("profile", nargs="?", help="drop only this profile's (as `vaultd clear`)")
    p.set_defaults(func=run_lock)
    p = sub.add_parser("unlock", help="send the token PIN to a sealed daemon (prompted)")
    p.set_defaults(func=run_unlock)


def run_lock(args: argparse.Namespace) -> int:
    if args.profile is not None:
        if args.seal:
            raise BadRequest("--seal seals the whole vault: drop the profile name, or --seal")
        # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
        from vaultd.commands.clear import clear_profile

        clear_profile(args.profile)
        return 0
    client().request("lock", seal=args.seal)
    print("sealed" if args.seal else "locked: sessions and approvals dropped")
    return 0


def run_unlock(args: argparse.Namespace) -> int:
    cfg = settings()
    try:
        already = _send_unlock(cfg)
    except HsmPinFinalTry as exc:
        already = _send_unlock(cfg, final_try_answer=ask_final_try(exc))
    print("already unlocked" if already else "unsealed")
    return 0


def _send_unlock(cfg: Settings, *, final_try_answer: str | None = None) -> bool:
    """Read the PIN from ``pin_source`` (prompting again if it prompts), send it, zero it;
    True when the daemon was unlocked already (it then left the token alone)."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd import app

    pin = app.read_pin(cfg) if app.uses_token(cfg) else bytearray()
    send = client().request
    try:
        reply = (
            send("unlock", pin=pin.decode())
            if final_try_answer is None
            else send("unlock", pin=pin.decode(), final_try_answer=final_try_answer)
        )
        return reply.get("already_unlocked") is True
    finally:
        pin[:] = bytes(len(pin))


def ask_final_try(refused: HsmPinFinalTry) -> str:
    """Show the daemon's final-try challenge on the terminal and return what the person types.

    Re-raises ``refused`` (nothing sent) when stdin is not a terminal, the daemon sent no
    challenge, or the person typed nothing.
    """

    if not sys.stdin.isatty() or not refused.challenge:
        raise HsmPinFinalTry(
            "the token is at its final PIN try and stdin is not a terminal, so nothing was "
            "sent: run `vaultd unlock` in a terminal (or unlock in the TUI) and type back the "
            "words it shows"
        )
    print(
        "vaultd: the token is at its FINAL PIN try: one more wrong PIN locks it, and only its\n"
        "SO PIN (the token's admin tool) can unlock it again. Check the PIN first.\n"
        f"To send the PIN once more, type these words: {refused.challenge}\n"
        "(anything else, or nothing, cancels): ",
        end="",
        file=sys.stderr,
        flush=True,
    )
    answer = sys.stdin.readline().strip()
    if not answer:
        raise HsmPinFinalTry(
            "not confirmed, so the final PIN try was not spent and the vault stays sealed; "
            "run `vaultd unlock` again and type back the words it shows"
        )
    return answer
