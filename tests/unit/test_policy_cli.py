"""`vaultd policy validate` and `vaultd policy simulate`, called through their parsers' ``func``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from vaultd.commands.policy import add_parser, run_simulate
from vaultd.errors import ConfigError, PolicyContextInvalid, PolicyInvalid

BAD = """{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "AllowAll", "Effect": "Allow", "Action": "vaultd:*", "Resource": "*"},
    {
      "Sid": "DenyCurl",
      "Effect": "Deny",
      "Action": "vaultd:GetCreds",
      "Resource": "*",
      "Condition": {"StringLike": {"vaultd:ClientExecutable": "*/curl"}}
    },
    {"Effect": "Allow", "Action": "vaultd:Exec", "Resource": "prod"}
  ]
}
"""

GOOD = BAD.replace("vaultd:GetCreds", "vaultd:GetCredentials").replace('"prod"', '"profile/x"')

LISTS = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "OnlyTools",
                "Effect": "Allow",
                "Action": "vaultd:GetCredentials",
                "Resource": "profile/*",
                "Condition": {
                    "ForAllValues:StringLike": {"vaultd:ClientExecutable": "/usr/bin/*"},
                    "DateLessThan": {"aws:CurrentTime": "2026-06-01T00:00:00Z"},
                    "NumericEquals": {"vaultd:ClientUid": 1000},
                },
            }
        ],
    }
)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vaultd")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def run(*argv: str) -> int:
    args = parse(*argv)
    code: int = args.func(args)
    return code


def test_validate_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.json"
    path.write_text(GOOD)
    assert run("policy", "validate", str(path)) == 0
    assert capsys.readouterr().out == "OK: 3 statements\n"


def test_validate_lists_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.json"
    path.write_text(BAD)
    assert run("policy", "validate", str(path)) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0] == (
        f"{path}: statement 2 (Sid DenyCurl), line 8: unknown action vaultd:GetCreds; "
        "known: vaultd:GetCredentials, vaultd:Exec, vaultd:BreakGlass, vaultd:Export, "
        "vaultd:Rotate, vaultd:AssumeRoot"
    )
    assert lines[1].startswith(f"{path}: statement 3, line 12: resource 'prod' must be")


def test_validate_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.json"
    path.write_text(BAD)
    assert run("policy", "validate", "--json", str(path)) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False
    assert [(p["statement"], p["sid"], p["line"]) for p in out["problems"]] == [
        (2, "DenyCurl", 8),
        (3, None, 12),
    ]
    path.write_text(GOOD)
    assert run("policy", "validate", "--json", str(path)) == 0
    assert json.loads(capsys.readouterr().out) == {"ok": True, "statements": 3, "problems": []}


def test_validate_unreadable_files_raise(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read policy file"):
        run("policy", "validate", str(tmp_path / "missing.json"))
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"Sid": "\xe9"}')
    with pytest.raises(PolicyInvalid, match="not UTF-8"):
        run("policy", "validate", str(latin))


@pytest.mark.parametrize(
    ("argv", "code", "expected"),
    [
        (
            ["--action", "vaultd:Export", "--resource", "profile/prod"],
            1,
            "decision: explicitDeny\nstatement: statement 4 (Sid DenyExportOfLongLivedKeys), "
            "line 24\n",
        ),
        (
            ["--action", "vaultd:BreakGlass", "--resource", "profile/prod"],
            1,
            "decision: implicitDeny\nstatement: none matched\n",
        ),
        (
            [
                "--action",
                "vaultd:breakglass",
                "--resource",
                "profile/prod",
                "--context",
                "vaultd:multifactorauthpresent=true",
            ],
            0,
            "decision: allowed\nstatement: statement 2 (Sid AllowBreakGlassWithMfa), line 10\n",
        ),
    ],
)
def test_simulate_default_policy(
    argv: list[str], code: int, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("policy", "simulate", *argv) == code
    assert capsys.readouterr().out == expected


def test_simulate_typed_context_and_lists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.json"
    path.write_text(LISTS)
    base = ["policy", "simulate", "--json", "--policy-file", str(path)]
    request = ["--action", "vaultd:GetCredentials", "--resource", "profile/dev"]
    context = [
        "--context=vaultd:ClientUid=1000",
        "--context=aws:CurrentTime=2026-01-01T00:00:00Z",
        "--context=vaultd:ClientExecutable=/usr/bin/aws",
        "--context=vaultd:ClientExecutable=/usr/bin/env",
    ]
    assert run(*base, *request, *context) == 0
    assert json.loads(capsys.readouterr().out) == {
        "action": "vaultd:GetCredentials",
        "resource": "profile/dev",
        "decision": "allowed",
        "statement": {"index": 1, "sid": "OnlyTools", "line": 1},
    }
    assert run(*base, *request, *context, "--context=vaultd:ClientExecutable=/tmp/x") == 1
    assert json.loads(capsys.readouterr().out)["decision"] == "implicitDeny"
    later = [c.replace("2026-01-01", "2026-07-01") for c in context]
    assert run(*base, *request, *later) == 1
    capsys.readouterr()


def test_simulate_policy_file_precedence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configured = tmp_path / "configured.json"
    configured.write_text(GOOD)
    argv = ["policy", "simulate", "--action", "vaultd:Export", "--resource", "profile/x"]
    args = parse(*argv)
    assert run_simulate(args, policy_file=configured) == 0
    assert "statement 1 (Sid AllowAll)" in capsys.readouterr().out
    explicit = tmp_path / "explicit.json"
    explicit.write_text(
        GOOD.replace('"Allow", "Action": "vaultd:*"', '"Deny", "Action": "vaultd:*"')
    )
    args = parse(*argv, "--policy-file", str(explicit))
    assert run_simulate(args, policy_file=configured) == 1
    assert "explicitDeny" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "error", "fragment"),
    [
        (["--context", "vaultd:ClientUid=abc"], PolicyContextInvalid, "must be an integer"),
        (["--context", "vaultd:ClientUid"], PolicyContextInvalid, "must be KEY=VALUE"),
        (["--context", "vaultd:Nope=1"], PolicyContextInvalid, "unknown condition key"),
        (["--context", "aws:CurrentTime=2026-01-01"], PolicyContextInvalid, "RFC 3339"),
        (["--resource", "prod"], PolicyContextInvalid, "profile/NAME"),
        (["--action", "vaultd:Fly"], PolicyContextInvalid, "unknown action"),
    ],
)
def test_simulate_bad_input_raises(extra: list[str], error: type[Exception], fragment: str) -> None:
    argv = ["--action", "vaultd:Exec", "--resource", "profile/x", *extra]
    with pytest.raises(error, match=fragment):
        run("policy", "simulate", *argv)


def test_simulate_invalid_policy_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(BAD)
    argv = ["--policy-file", str(path), "--action", "vaultd:Exec", "--resource", "profile/x"]
    with pytest.raises(PolicyInvalid, match=rf"policy file {path} is invalid: statement 2") as info:
        run("policy", "simulate", *argv)
    assert (info.value.line, info.value.statement) == (8, "DenyCurl")
