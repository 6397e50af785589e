"""`vaultd approvals`, `vaultd approve ID` (the code typed without echo, or on stdin; it waits
for the approved request and reports its real outcome; Ctrl-C at the prompt denies), and
`vaultd deny ID`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from vaultd.commands._args import Subparsers
from vaultd.commands._client import client
from vaultd.core.termtext import terminal_safe
from vaultd.errors import ApprovalNotFound, ClientGone, CodeMalformed, ProtocolError

if TYPE_CHECKING:
    from vaultd.errors import VaultError
    from vaultd.ipc.client import DaemonClient


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("approvals", help="list pending approvals")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--clear-cooldown",
        metavar="PROFILE",
        help="end PROFILE's cooldown after a denied or timed-out approval",
    )
    p.set_defaults(func=run_list)
    p = sub.add_parser(
        "approve",
        help="approve a pending request with your MFA code (typed without echo, or on stdin)",
    )
    p.add_argument("id")
    p.add_argument(
        "--code",
        help="DEPRECATED: argv is readable by every user (ps); type the code or pipe it on stdin",
    )
    p.set_defaults(func=run_approve)
    p = sub.add_parser("deny", help="deny a pending request")
    p.add_argument("id")
    p.set_defaults(func=run_deny)


def run_list(args: argparse.Namespace) -> int:

    from vaultd.core.termtext import terminal_safe

    fields = {"clear_cooldown": args.clear_cooldown} if args.clear_cooldown else {}
    reply = client().request("approvals", **fields)
    approvals, in_progress, cooldowns = (
        reply["approvals"], reply["in_progress"], reply["cooldowns"]
    )  # fmt: skip
    assert isinstance(approvals, list) and isinstance(in_progress, list)  # noqa: S101 - protocol
    assert isinstance(cooldowns, dict)  # noqa: S101 - protocol guarantees an object
    if args.clear_cooldown:
        print(terminal_safe(f"cooldown of profile {args.clear_cooldown} ended"))
    if args.json:
        print(json.dumps(approvals, indent=2))
        return 0
    if not approvals and not in_progress:
        print("no pending approvals")
    for p in in_progress:
        print(terminal_safe(f"{p['id']}  {p['profile']}  answered: {p['message']}"))
    for a in approvals:
        who = a["requested_by"]
        line = (
            f"{a['id']}  {a['profile']}{_device(a)}  by pid {who['pid']} {_program(who)}"
            f"  (cwd {who['cwd'] or '?'})  expires {a['expires_at']}"
        )
        print(terminal_safe(line))
        for joiner in a["joined"]:
            print(terminal_safe(f"    also waiting: pid {joiner['pid']} {_program(joiner)}"))
        if a["joined_more"]:
            print(f"    and {a['joined_more']} more processes")
    for name, left in sorted(cooldowns.items()):
        print(
            terminal_safe(
                f"profile {name}: denied, cooldown {left} s left "
                f"(end it: vaultd approvals --clear-cooldown {name})"
            )
        )
    return 0


def _program(who: Mapping[str, object]) -> object:
    """What a requester runs: its parent's command line, else its own executable."""
    return who["parent_command"] or who["executable"]


ISSUED = "ISSUED"
"""The :func:`outcome` of an approved request whose session was issued."""
OUTCOME_TIMEOUT = 70.0
"""How long `vaultd approve` waits for the approved request to end (the client's timeout)."""


def read_code(deprecated_arg: str | None, approval: Mapping[str, object]) -> str:
    """The MFA code: typed on the terminal without echo, else the first line of stdin; the
    deprecated ``--code`` value still works, with a warning.  Nothing typed or piped raises
    :class:`~vaultd.errors.CodeMalformed`; Ctrl-C at the prompt raises ``KeyboardInterrupt``."""

    if deprecated_arg is not None:
        print(
            "vaultd: WARNING: --code is deprecated: any user can read it in the process list; "
            "type the code when asked, or pipe it on stdin",
            file=sys.stderr,
        )
        return deprecated_arg
    if sys.stdin is not None and sys.stdin.isatty():
        import getpass

        print(_describe(approval), file=sys.stderr)
        try:
            code = getpass.getpass("MFA code (Ctrl-C denies): ").strip()
        except EOFError:
            code = ""
        where = "typed"
    else:
        code = sys.stdin.readline(64).strip() if sys.stdin is not None else ""
        where = "on stdin"
    if not code:
        raise CodeMalformed(
            f"no MFA code {where}; approval {approval['id']} is still pending: type the code "
            "when `vaultd approve ID` asks in a terminal, or pipe it (`vaultd approve ID < file`)"
        )
    return code


def _describe(approval: Mapping[str, object]) -> str:
    """One line naming what is approved: the approval, the profile and the requester."""

    who = approval["requested_by"]
    assert isinstance(who, dict)  # noqa: S101 - protocol guarantees an object
    program = who.get("parent_command") or who.get("executable") or "?"
    return terminal_safe(
        f"approval {approval['id']}: profile {approval['profile']}{_device(approval)} "
        f"for pid {who.get('pid')} "
        f"{program} (cwd {who.get('cwd') or '?'})"
    )


def _device(approval: Mapping[str, object]) -> str:
    """`` (MFA device ARN)`` for an approval that names its MFA device, else ""."""
    serial = approval.get("mfa_serial")
    return f" (MFA device {serial})" if serial else ""


def run_approve(args: argparse.Namespace) -> int:
    daemon = client()
    approval = _pending(daemon, args.id)
    try:
        code = read_code(args.code, approval)
    except KeyboardInterrupt:
        daemon.request("deny", id=args.id)
        print(f"vaultd: interrupted: denied {args.id}", file=sys.stderr)
        return 130
    daemon.request("approve", id=args.id, code=code)
    gone = _await_outcome(daemon, approval)
    print(f"approved {args.id}: credentials issued for profile {approval['profile']}")
    if gone:
        print("(its requester had gone; the session is cached for the next request)")
    return 0


def _pending(daemon: DaemonClient, approval_id: str) -> Mapping[str, object]:
    """The pending approval ``approval_id``, or :class:`~vaultd.errors.ApprovalNotFound`."""

    approvals = daemon.request("approvals")["approvals"]
    assert isinstance(approvals, list)  # noqa: S101 - protocol guarantees a list
    for approval in approvals:
        if approval["id"] == approval_id:
            return dict(approval)
    raise ApprovalNotFound(
        f"no pending approval {approval_id!r} (answered, expired or mistyped): list them with "
        "`vaultd approvals`"
    )


def _await_outcome(daemon: DaemonClient, approval: Mapping[str, object]) -> bool:
    """Wait until the approved request has its credentials (True if its requester had gone
    by then: the session is cached); raise its error if it failed.

    The daemon answers ``approve`` once the code is handed over, before the code is checked
    against the used-code ledger and sent to STS; the outcome is read from the audit log
    (``audit_tail``), which records both.
    """

    began = time.monotonic()
    told = False
    while True:
        records = daemon.request("audit_tail", n=500)["records"]
        assert isinstance(records, list)  # noqa: S101 - protocol guarantees a list
        result = outcome(records[::-1], approval)
        if result in (ISSUED, ClientGone.code):
            return result == ClientGone.code
        if result is not None:
            raise _failure(result, approval)
        waited = time.monotonic() - began
        if waited > OUTCOME_TIMEOUT:
            raise ProtocolError(
                f"approval {approval['id']} was accepted, but its request did not end within "
                f"{OUTCOME_TIMEOUT:g} s: see `vaultd audit tail` and the daemon log"
            )
        if waited > 1.0 and not told:
            print("vaultd: code accepted; waiting for STS", file=sys.stderr)
            told = True
        time.sleep(0.1)


def outcome(records: Sequence[object], approval: Mapping[str, object]) -> str | None:
    """What became of an approved request, from audit records oldest first: None while it
    runs, ``ISSUED``, ``CLIENT_GONE`` (issued and cached, its requester had left) or the error
    code it failed with.

    The approval's own record says whether its code was taken (``approval_granted``) or
    refused (``approval_failed``: a reused code, ...).  After it, a ``release`` of the profile
    (to the requester or to a process that joined it), or a ``session_used`` (the daemon's
    own use: rotation, console sign-in), means the session was issued; the
    requester's own ``refused`` record means it failed, unless only the requester was gone.
    """
    who = approval["requested_by"]
    pid = who.get("pid") if isinstance(who, dict) else None
    granted = False
    for record in records:
        if not isinstance(record, dict):
            continue
        event = record.get("event")
        if record.get("approval") == approval["id"]:
            if event == "approval_failed":
                return str(record.get("outcome"))
            granted = granted or event == "approval_granted"
        elif granted and record.get("profile") == approval["profile"]:
            client = record.get("client")
            if event in ("release", "session_used"):  # session_used: rotation, sign-in
                return ISSUED
            if event == "refused" and isinstance(client, dict) and client.get("pid") == pid:
                return str(record.get("outcome"))
    return None


def _failure(code: str, approval: Mapping[str, object]) -> VaultError:
    """The error of a request that failed after its approval was accepted."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from vaultd.ipc.protocol import error_class, error_from_reply

    cls = error_class(code)
    fix = f": {cls.fix}" if cls is not None and cls.fix else ""
    message = (
        f"approval {approval['id']} was accepted, but the request for profile "
        f"{approval['profile']} then failed ({code}){fix}"
    )
    return error_from_reply({"code": code, "message": message})


def run_deny(args: argparse.Namespace) -> int:
    client().request("deny", id=args.id)
    print(f"denied {args.id}")
    return 0
