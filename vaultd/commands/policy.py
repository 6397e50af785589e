"""`vaultd policy validate FILE` and `vaultd policy simulate`: check and try out access policies."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vaultd.core.access_policy import (
    ContextValue,
    Decision,
    Scalar,
    evaluate,
    parse_context_value,
    parse_policy,
    validate,
)
from vaultd.errors import PolicyContextInvalid
from vaultd.store.policy_file import load_policy, read_policy_text

# The names the IAM policy simulator uses for its decisions.
DECISION_NAMES = {
    "allow": "allowed",
    "explicit_deny": "explicitDeny",
    "implicit_deny": "implicitDeny",
}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `policy validate` and `policy simulate`."""
    p = sub.add_parser("policy", help="check and try out access policies")
    commands = p.add_subparsers(dest="policy_command", required=True, metavar="COMMAND")

    v = commands.add_parser("validate", help="check a policy file and list every problem")
    v.add_argument("file", type=Path, metavar="FILE", help="the policy JSON file")
    v.add_argument("--json", action="store_true", help="machine-readable output")
    v.set_defaults(func=run_validate)

    s = commands.add_parser("simulate", help="show the decision for one request")
    s.add_argument(
        "--policy-file", type=Path, default=None, help="policy to use (default: the configured one)"
    )
    s.add_argument("--action", required=True, help="for example vaultd:GetCredentials")
    s.add_argument("--resource", required=True, help="for example profile/prod")
    s.add_argument(
        "--context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a condition key value; give a key twice for a list",
    )
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=_run_simulate_configured)


def parse_context(pairs: list[str]) -> dict[str, ContextValue]:
    """Turn ``KEY=VALUE`` arguments into a context; a key given twice becomes a list."""
    values: dict[str, list[Scalar]] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise PolicyContextInvalid(f"--context {name!r} must be KEY=VALUE")
        key, value = parse_context_value(name, text)
        values.setdefault(key, []).append(value)
    return {key: items[0] if len(items) == 1 else items for key, items in values.items()}


def run_validate(args: argparse.Namespace) -> int:
    """Print `OK: N statements`, or one line per problem and return 1."""
    path: Path = args.file
    text = read_policy_text(path)
    problems = validate(text)
    count = 0 if problems else len(parse_policy(text).statements)
    if args.json:
        rows = [
            {
                "message": p.message,
                "line": p.line,
                "statement": p.statement.index if p.statement else None,
                "sid": p.statement.sid if p.statement else None,
            }
            for p in problems
        ]
        print(json.dumps({"ok": not problems, "statements": count, "problems": rows}, indent=2))
    elif problems:
        for problem in problems:
            print(f"{path}: {problem}")
    else:
        print(f"OK: {count} statements")
    return 1 if problems else 0


def _run_simulate_configured(args: argparse.Namespace) -> int:
    """`policy simulate` with the configured ``policy_file`` as the fallback."""
    configured = None
    if args.policy_file is None:
        # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
        from vaultd.settings import load_settings

        configured = load_settings().policy_file
    return run_simulate(args, policy_file=configured)


def run_simulate(args: argparse.Namespace, *, policy_file: Path | None = None) -> int:
    """Print the decision and the deciding statement; 0 when allowed, 1 when denied.

    ``--policy-file`` wins over ``policy_file`` (the configured file); with neither, the
    shipped default policy is used.
    """
    policy = load_policy(args.policy_file or policy_file)
    decision = evaluate(policy, args.action, args.resource, parse_context(args.context))
    if args.json:
        print(json.dumps(_decision_json(args.action, args.resource, decision), indent=2))
    else:
        print(f"decision: {DECISION_NAMES[decision.kind]}")
        ref = decision.statement
        print(f"statement: {ref}, line {ref.line}" if ref else "statement: none matched")
    return 0 if decision.allowed else 1


def _decision_json(action: str, resource: str, decision: Decision) -> dict[str, object]:
    ref = decision.statement
    return {
        "action": action,
        "resource": resource,
        "decision": DECISION_NAMES[decision.kind],
        "statement": {"index": ref.index, "sid": ref.sid, "line": ref.line} if ref else None,
    }
