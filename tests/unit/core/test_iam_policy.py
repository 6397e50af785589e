"""The IAM-semantics policy engine: evaluation, conditions, validation, the shipped default."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vaultd.core.access_policy import (
    MAX_POLICY_CHARS,
    Decision,
    Policy,
    default_policy,
    enforce,
    evaluate,
    parse_context_value,
    parse_policy,
    validate,
)
from vaultd.errors import PolicyContextInvalid, PolicyDenied, PolicyInvalid, VaultError

GET = "vaultd:GetCredentials"
PROD = "profile/prod"


def policy(*statements: dict[str, Any]) -> Policy:
    return parse_policy(json.dumps({"Version": "2012-10-17", "Statement": list(statements)}))


def allow(action: Any = GET, resource: Any = "profile/*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: Any = GET, resource: Any = "profile/*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def outcome(decision: Decision) -> tuple[str, int | None]:
    return decision.kind, decision.statement.index if decision.statement else None


# --- evaluation: effects, actions, resources ---------------------------------------------

EVALUATION = [
    pytest.param([allow()], GET, PROD, ("allow", 1), id="allow"),
    pytest.param([allow("vaultd:Exec")], GET, PROD, ("implicit_deny", None), id="implicit-deny"),
    pytest.param(
        [allow("vaultd:Rotate"), deny("vaultd:Export")],
        GET,
        PROD,
        ("implicit_deny", None),
        id="no-statement-matches",
    ),
    pytest.param([deny(), allow()], GET, PROD, ("explicit_deny", 1), id="deny-first"),
    pytest.param([allow(), deny()], GET, PROD, ("explicit_deny", 2), id="deny-last-still-wins"),
    pytest.param([allow(), allow()], GET, PROD, ("allow", 1), id="first-allow-reported"),
    pytest.param([allow("vaultd:*")], "vaultd:Export", PROD, ("allow", 1), id="action-star"),
    pytest.param([allow("*")], "vaultd:Rotate", PROD, ("allow", 1), id="bare-star"),
    pytest.param([allow("vaultd:Get*")], GET, PROD, ("allow", 1), id="action-prefix"),
    pytest.param(
        [allow("vaultd:Get*")], "vaultd:Exec", PROD, ("implicit_deny", None), id="prefix-no-match"
    ),
    pytest.param([allow("vaultd:E?ec")], "vaultd:Exec", PROD, ("allow", 1), id="action-question"),
    pytest.param([allow("VAULTD:getcredentials")], GET, PROD, ("allow", 1), id="action-case-1"),
    pytest.param([allow()], "VaultD:GETCREDENTIALS", PROD, ("allow", 1), id="action-case-2"),
    pytest.param(
        [allow(resource="profile/prod-*")], GET, "profile/prod-eu", ("allow", 1), id="res-star"
    ),
    pytest.param(
        [allow(resource="profile/prod-*")], GET, "profile/dev", ("implicit_deny", None), id="res-x"
    ),
    pytest.param([allow(resource="profile/dev?")], GET, "profile/dev1", ("allow", 1), id="res-q"),
    pytest.param(
        [allow(resource="profile/dev?")], GET, "profile/dev12", ("implicit_deny", None), id="res-q2"
    ),
    pytest.param(
        [allow(resource="profile/Prod")], GET, PROD, ("implicit_deny", None), id="res-case"
    ),
    pytest.param([allow(resource="*")], GET, PROD, ("allow", 1), id="res-any"),
    pytest.param(
        [allow(resource=["profile/a", "profile/prod"])], GET, PROD, ("allow", 1), id="res-list"
    ),
    pytest.param(
        [{"Effect": "Allow", "NotAction": "vaultd:Export", "Resource": "*"}],
        GET,
        PROD,
        ("allow", 1),
        id="notaction-allows-others",
    ),
    pytest.param(
        [{"Effect": "Allow", "NotAction": "vaultd:Export", "Resource": "*"}],
        "vaultd:Export",
        PROD,
        ("implicit_deny", None),
        id="notaction-excludes",
    ),
    pytest.param(
        [allow("*"), {"Effect": "Deny", "NotAction": GET, "Resource": "*"}],
        "vaultd:Exec",
        PROD,
        ("explicit_deny", 2),
        id="deny-notaction",
    ),
    pytest.param(
        [allow("*"), {"Effect": "Deny", "NotAction": GET, "Resource": "*"}],
        GET,
        PROD,
        ("allow", 1),
        id="deny-notaction-spares",
    ),
    pytest.param(
        [allow(), {"Effect": "Deny", "Action": GET, "NotResource": "profile/dev-*"}],
        GET,
        PROD,
        ("explicit_deny", 2),
        id="deny-notresource",
    ),
    pytest.param(
        [allow(), {"Effect": "Deny", "Action": GET, "NotResource": "profile/dev-*"}],
        GET,
        "profile/dev-1",
        ("allow", 1),
        id="deny-notresource-spares",
    ),
    pytest.param(
        [allow(), deny(Condition={"Bool": {"vaultd:MultiFactorAuthPresent": "false"}})],
        GET,
        PROD,
        ("allow", 1),
        id="deny-condition-false",
    ),
]


@pytest.mark.parametrize(("statements", "action", "resource", "expected"), EVALUATION)
def test_evaluation(
    statements: list[dict[str, Any]], action: str, resource: str, expected: tuple[str, int | None]
) -> None:
    decision = evaluate(policy(*statements), action, resource, {})
    assert outcome(decision) == expected
    assert decision.allowed == (expected[0] == "allow")


# --- conditions ---------------------------------------------------------------------------

EXE = "vaultd:ClientExecutable"
UID = "vaultd:ClientUid"
AGE = "vaultd:MultiFactorAuthAge"
MFA = "vaultd:MultiFactorAuthPresent"
NOW = "aws:CurrentTime"
JAN = datetime(2026, 1, 1, tzinfo=UTC)
JUL = datetime(2026, 7, 1, tzinfo=UTC)
MISSING = object()

CONDITIONS = [
    ("StringEquals", EXE, "/usr/bin/aws", "/usr/bin/aws", True),
    ("StringEquals", EXE, "/usr/bin/aws", "/usr/bin/curl", False),
    ("StringEquals", EXE, "/usr/bin/aws", MISSING, False),
    ("StringEquals", EXE, "/USR/BIN/AWS", "/usr/bin/aws", False),
    ("StringEquals", EXE, ["/a", "/b"], "/b", True),
    ("StringNotEquals", EXE, "/usr/bin/curl", "/usr/bin/aws", True),
    ("StringNotEquals", EXE, "/usr/bin/curl", "/usr/bin/curl", False),
    ("StringNotEquals", EXE, "/usr/bin/curl", MISSING, True),
    ("StringNotEquals", EXE, ["/a", "/b"], "/b", False),
    ("StringNotEquals", EXE, ["/a", "/b"], "/c", True),
    ("StringEqualsIgnoreCase", EXE, "/USR/BIN/AWS", "/usr/bin/aws", True),
    ("StringNotEqualsIgnoreCase", EXE, "/USR/BIN/AWS", "/usr/bin/aws", False),
    ("StringNotEqualsIgnoreCase", EXE, "/USR/BIN/AWS", MISSING, True),
    ("StringLike", EXE, "/usr/bin/*", "/usr/bin/aws", True),
    ("StringLike", EXE, "/usr/bin/*", "/usr/local/bin/aws", False),
    ("StringLike", EXE, "/usr/bin/aw?", "/usr/bin/aws", True),
    ("StringLike", EXE, "/usr/bin/aw?", "/usr/bin/awsx", False),
    ("StringLike", EXE, "/usr/bin/*", MISSING, False),
    ("StringNotLike", EXE, "/usr/bin/*", "/tmp/x", True),
    ("StringNotLike", EXE, "/usr/bin/*", "/usr/bin/aws", False),
    ("StringNotLike", EXE, "/usr/bin/*", MISSING, True),
    ("StringEquals", UID, "1000", 1000, True),
    ("StringEquals", MFA, "true", True, True),
    ("NumericEquals", UID, 1000, 1000, True),
    ("NumericEquals", UID, "1000", 1001, False),
    ("NumericEquals", UID, 1000, MISSING, False),
    ("NumericNotEquals", UID, 0, 1000, True),
    ("NumericNotEquals", UID, 0, 0, False),
    ("NumericNotEquals", UID, 0, MISSING, True),
    ("NumericLessThan", AGE, 300, 299, True),
    ("NumericLessThan", AGE, 300, 300, False),
    ("NumericLessThan", AGE, 300, MISSING, False),
    ("NumericLessThan", AGE, "2.5", 2, True),
    ("NumericLessThanEquals", AGE, 300, 300, True),
    ("NumericLessThanEquals", AGE, 300, 301, False),
    ("NumericGreaterThan", "vaultd:ClientPid", 1, 2, True),
    ("NumericGreaterThan", "vaultd:ClientPid", 1, 1, False),
    ("NumericGreaterThanEquals", "vaultd:ClientPid", 1, 1, True),
    ("NumericGreaterThanEquals", "vaultd:ClientPid", 1, 0, False),
    ("DateLessThan", NOW, "2026-06-01T00:00:00Z", JAN, True),
    ("DateLessThan", NOW, "2026-06-01T00:00:00Z", JUL, False),
    ("DateLessThan", NOW, "2026-06-01T00:00:00Z", MISSING, False),
    ("DateLessThanEquals", NOW, "2026-01-01T00:00:00Z", JAN, True),
    ("DateGreaterThan", NOW, "2026-06-01T00:00:00Z", JUL, True),
    ("DateGreaterThan", NOW, "2026-06-01T00:00:00Z", JAN, False),
    ("DateGreaterThanEquals", NOW, "2026-07-01T00:00:00Z", JUL, True),
    ("DateGreaterThan", NOW, 0, JAN, True),
    ("DateEquals", NOW, "2026-01-01T01:00:00+01:00", JAN, True),
    ("DateEquals", NOW, "2026-01-01T00:00:01Z", JAN, False),
    ("DateNotEquals", NOW, "2026-01-01T00:00:01Z", JAN, True),
    ("DateNotEquals", NOW, "2026-01-01T00:00:00Z", JAN, False),
    ("DateNotEquals", NOW, "2026-01-01T00:00:00Z", MISSING, True),
    ("Bool", MFA, "true", True, True),
    ("Bool", MFA, "true", False, False),
    ("Bool", MFA, "true", MISSING, False),
    ("Bool", MFA, True, True, True),
    ("Bool", MFA, "FALSE", False, True),
    ("Null", MFA, "true", MISSING, True),
    ("Null", MFA, "true", False, False),
    ("Null", MFA, "false", False, True),
    ("Null", MFA, "false", MISSING, False),
    ("Null", EXE, "true", [], True),
    ("StringEqualsIfExists", EXE, "/usr/bin/aws", MISSING, True),
    ("StringEqualsIfExists", EXE, "/usr/bin/aws", "/usr/bin/curl", False),
    ("StringEqualsIfExists", EXE, "/usr/bin/aws", "/usr/bin/aws", True),
    ("StringNotEqualsIfExists", EXE, "/usr/bin/aws", "/usr/bin/aws", False),
    ("NumericLessThanIfExists", AGE, 300, MISSING, True),
    ("NumericLessThanIfExists", AGE, 300, 900, False),
    ("DateLessThanIfExists", NOW, "2026-06-01T00:00:00Z", MISSING, True),
    ("BoolIfExists", MFA, "true", MISSING, True),
    ("BoolIfExists", MFA, "true", False, False),
    ("ForAnyValue:StringEquals", EXE, "/a", ["/a", "/b"], True),
    ("ForAnyValue:StringEquals", EXE, "/a", ["/c"], False),
    ("ForAnyValue:StringEquals", EXE, "/a", [], False),
    ("ForAnyValue:StringEquals", EXE, "/a", MISSING, False),
    ("ForAnyValue:StringEquals", EXE, "/a", "/a", True),
    ("ForAnyValue:StringNotEquals", EXE, "/a", ["/a", "/b"], True),
    ("ForAnyValue:StringNotEquals", EXE, "/a", ["/a"], False),
    ("ForAnyValue:StringEqualsIfExists", EXE, "/a", MISSING, True),
    ("ForAnyValue:StringEqualsIfExists", EXE, "/a", [], False),
    ("ForAllValues:StringEquals", EXE, ["/a", "/b"], ["/a", "/b"], True),
    ("ForAllValues:StringEquals", EXE, ["/a", "/b"], ["/a", "/c"], False),
    ("ForAllValues:StringEquals", EXE, ["/a", "/b"], [], True),
    ("ForAllValues:StringEquals", EXE, ["/a", "/b"], MISSING, True),
    ("ForAllValues:StringLike", EXE, "/usr/bin/*", ["/usr/bin/a", "/usr/bin/b"], True),
    ("ForAllValues:StringLike", EXE, "/usr/bin/*", ["/usr/bin/a", "/tmp/b"], False),
    ("ForAllValues:StringNotEquals", EXE, "/a", ["/b", "/c"], True),
    ("ForAllValues:StringNotEquals", EXE, "/a", ["/a", "/b"], False),
    ("ForAllValues:NumericLessThan", UID, 1000, [1, 2], True),
    ("ForAllValues:NumericLessThan", UID, 1000, [1, 2000], False),
    ("StringEquals", EXE, "/a", ["/a", "/b"], True),
    ("StringNotEquals", EXE, "/a", ["/a", "/b"], False),
    ("StringNotEquals", EXE, "/a", [], True),
]


@pytest.mark.parametrize(("op", "key", "value", "ctx", "expected"), CONDITIONS)
def test_condition_operator(op: str, key: str, value: Any, ctx: Any, expected: bool) -> None:
    doc = policy(allow(Condition={op: {key: value}}))
    context = {} if ctx is MISSING else {key: ctx}
    assert evaluate(doc, GET, PROD, context).allowed is expected


def test_keys_in_one_block_and_blocks_are_anded() -> None:
    one_block = policy(allow(Condition={"StringEquals": {EXE: "/a", "vaultd:Profile": "prod"}}))
    two_blocks = policy(
        allow(Condition={"StringEquals": {EXE: "/a"}, "Bool": {MFA: "true"}}),
    )
    assert evaluate(one_block, GET, PROD, {EXE: "/a", "vaultd:Profile": "prod"}).allowed
    assert not evaluate(one_block, GET, PROD, {EXE: "/a", "vaultd:Profile": "dev"}).allowed
    assert evaluate(two_blocks, GET, PROD, {EXE: "/a", MFA: True}).allowed
    assert not evaluate(two_blocks, GET, PROD, {EXE: "/a", MFA: False}).allowed


def test_condition_key_names_ignore_case() -> None:
    doc = policy(allow(Condition={"StringEquals": {"VAULTD:clientexecutable": "/a"}}))
    assert evaluate(doc, GET, PROD, {EXE: "/a"}).allowed
    assert evaluate(doc, GET, PROD, {"vaultd:CLIENTEXECUTABLE": "/a"}).allowed
    assert not evaluate(doc, GET, PROD, {"vaultd:clientexecutable": "/b"}).allowed


def test_naive_context_time_is_utc() -> None:
    doc = policy(allow(Condition={"DateEquals": {NOW: "2026-01-01T00:00:00Z"}}))
    assert evaluate(doc, GET, PROD, {"AWS:currenttime": datetime(2026, 1, 1)}).allowed


@pytest.mark.parametrize(
    ("action", "resource", "context", "fragment"),
    [
        ("vaultd:GetCreds", PROD, {}, "unknown action"),
        ("vaultd:*", PROD, {}, "unknown action"),
        (GET, "prod", {}, "profile/NAME"),
        (GET, "profile/a/b", {}, "profile/NAME"),
        (GET, "profile/prod\n", {}, "profile/NAME"),
        (GET, PROD, {"vaultd:Nope": "x"}, "unknown condition key"),
        (GET, PROD, {EXE: 1}, "must be of type string"),
        (GET, PROD, {UID: True}, "must be of type numeric"),
        (GET, PROD, {UID: "1000"}, "must be of type numeric"),
        (GET, PROD, {MFA: "true"}, "must be of type bool"),
        (GET, PROD, {NOW: "2026-01-01"}, "must be of type date"),
        (GET, PROD, {EXE: "/a", "VAULTD:ClientExecutable": "/a"}, "given twice"),
    ],
)
def test_bad_requests_raise(
    action: str, resource: str, context: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(PolicyContextInvalid, match=fragment) as info:
        evaluate(default_policy(), action, resource, context)
    assert info.value.code == "POLICY_CONTEXT_INVALID"


# --- enforce and the shipped default ------------------------------------------------------


def test_enforce_names_the_deciding_statement() -> None:
    doc = policy(allow("vaultd:*"), {"Sid": "NoExport", **deny("vaultd:Export")})
    assert enforce(doc, GET, PROD, {}).statement is not None
    with pytest.raises(PolicyDenied, match="NoExport") as explicit:
        enforce(doc, "vaultd:Export", PROD, {})
    assert explicit.value.statement == "NoExport"
    assert explicit.value.code == "ACCESS_DENIED_BY_POLICY"
    unnamed = policy(allow("vaultd:Exec"), deny("vaultd:Export"))
    with pytest.raises(PolicyDenied) as by_index:
        enforce(unnamed, "vaultd:Export", PROD, {})
    assert by_index.value.statement == 2
    with pytest.raises(PolicyDenied, match="no policy statement allows") as implicit:
        enforce(unnamed, GET, PROD, {})
    assert implicit.value.statement is None


@pytest.mark.parametrize(
    ("action", "mfa", "expected"),
    [
        (GET, MISSING, ("allow", "AllowSessionCredentials")),
        ("vaultd:Exec", MISSING, ("allow", "AllowSessionCredentials")),
        ("vaultd:BreakGlass", MISSING, ("implicit_deny", None)),
        ("vaultd:BreakGlass", False, ("implicit_deny", None)),
        ("vaultd:BreakGlass", True, ("allow", "AllowBreakGlassWithMfa")),
        ("vaultd:Rotate", False, ("implicit_deny", None)),
        ("vaultd:Rotate", True, ("allow", "AllowRotateWithMfa")),
        ("vaultd:Export", MISSING, ("explicit_deny", "DenyExportOfLongLivedKeys")),
        ("vaultd:Export", True, ("explicit_deny", "DenyExportOfLongLivedKeys")),
    ],
)
def test_default_policy(action: str, mfa: Any, expected: tuple[str, str | None]) -> None:
    context = {} if mfa is MISSING else {MFA: mfa}
    decision = evaluate(default_policy(), action, "profile/any-profile", context)
    assert (decision.kind, decision.statement.sid if decision.statement else None) == expected


# --- validation -----------------------------------------------------------------------------


def doc_with(*members: str) -> str:
    """A policy whose second statement starts on line 5 and holds ``members`` from line 6."""
    body = ",\n".join(f"      {m}" for m in members)
    return (
        "{\n"
        '  "Version": "2012-10-17",\n'
        '  "Statement": [\n'
        '    {"Sid": "AllowAll", "Effect": "Allow", "Action": "vaultd:*", "Resource": "*"},\n'
        "    {\n"
        f"{body}\n"
        "    }\n"
        "  ]\n"
        "}\n"
    )


SID = '"Sid": "DenyCurl"'
EFFECT = '"Effect": "Deny"'
ACTION = '"Action": "vaultd:GetCredentials"'
RESOURCE = '"Resource": "*"'

VALIDATION = [
    pytest.param(
        [SID, EFFECT, '"Action": "vaultd:GetCreds"', RESOURCE],
        "statement 2 (Sid DenyCurl), line 8: unknown action vaultd:GetCreds",
        id="unknown-action",
    ),
    pytest.param(
        [SID, EFFECT, '"Action": "vaultd:Nope*"', RESOURCE],
        "line 8: unknown action vaultd:Nope*",
        id="wildcard-matching-nothing",
    ),
    pytest.param(
        [SID, EFFECT, '"Action": "s3:GetObject"', RESOURCE],
        "line 8: unknown action s3:GetObject",
        id="foreign-action",
    ),
    pytest.param(
        [SID, EFFECT, ACTION, RESOURCE, '"Condition": {"StringEquals": {"vaultd:Nope": "x"}}'],
        "line 10: unknown condition key vaultd:Nope",
        id="unknown-key",
    ),
    pytest.param(
        [SID, EFFECT, ACTION, RESOURCE, '"Condition": {"StringEqualz": {"vaultd:Profile": "x"}}'],
        "line 10: unknown condition operator StringEqualz",
        id="unknown-operator",
    ),
    pytest.param(
        [SID, EFFECT, ACTION, RESOURCE, '"Condition": {"IpAddress": {"vaultd:Profile": "x"}}'],
        "unknown condition operator IpAddress",
        id="iam-operator-not-supported",
    ),
    pytest.param(
        [SID, EFFECT, ACTION, '"NotAction": "vaultd:Exec"', RESOURCE],
        "line 9: has both Action and NotAction",
        id="action-and-notaction",
    ),
    pytest.param(
        [SID, EFFECT, ACTION, RESOURCE, '"NotResource": "*"'],
        "line 10: has both Resource and NotResource",
        id="resource-and-notresource",
    ),
    pytest.param([SID, EFFECT, RESOURCE], "line 5: needs Action or NotAction", id="no-action"),
    pytest.param([SID, EFFECT, ACTION], "line 5: needs Resource or NotResource", id="no-res"),
    pytest.param([SID, ACTION, RESOURCE], "line 5: missing Effect", id="missing-effect"),
    pytest.param(
        [SID, '"Effect": "allow"', ACTION, RESOURCE],
        "line 7: Effect must be Allow or Deny, not 'allow'",
        id="bad-effect",
    ),
    pytest.param(
        [SID, EFFECT, '"Action": []', RESOURCE], "line 8: Action must not be an empty", id="empty"
    ),
    pytest.param(
        [SID, EFFECT, '"Action": ["vaultd:Exec", 3]', RESOURCE],
        "line 8: Action must be a string or a list of strings",
        id="non-string-action",
    ),
    pytest.param(
        [SID, EFFECT, ACTION, '"Resource": "arn:aws:s3:::bucket"'],
        "line 9: resource 'arn:aws:s3:::bucket' must be",
        id="bad-resource",
    ),
    pytest.param(
        [SID, EFFECT, ACTION, '"Resource": "profile/${aws:username}"'],
        "line 9: resource",
        id="variable-in-resource",
    ),
    pytest.param(
        [SID, EFFECT, ACTION, RESOURCE, '"Condition": {"StringLike": {"vaultd:Profile": "${x}"}}'],
        "line 10: StringLike vaultd:Profile: policy variables are not supported",
        id="variable-in-condition",
    ),
    pytest.param(
        [SID, EFFECT, ACTION, RESOURCE, '"Principal": "*"'],
        "line 10: Principal is not used",
        id="principal",
    ),
    pytest.param(
        [SID, EFFECT, '"Actions": "vaultd:Exec"', RESOURCE],
        "line 8: unknown element 'Actions'",
        id="unknown-element",
    ),
    pytest.param(
        ['"Sid": "AllowAll"', EFFECT, ACTION, RESOURCE],
        "statement 2 (Sid AllowAll), line 6: duplicate Sid AllowAll (also statement 1)",
        id="duplicate-sid",
    ),
    pytest.param(
        ['"Sid": "Deny-Curl"', EFFECT, ACTION, RESOURCE],
        "statement 2, line 6: Sid must be",
        id="bad-sid",
    ),
    pytest.param(
        [SID, EFFECT, ACTION, RESOURCE, '"Condition": {"NumericLessThan": {"vaultd:Profile": 1}}'],
        "line 10: NumericLessThan compares numeric values but vaultd:Profile is string",
        id="type-mismatch",
    ),
    pytest.param(
        [
            SID,
            EFFECT,
            ACTION,
            RESOURCE,
            '"Condition": {"NumericEquals": {"vaultd:ClientUid": "x"}}',
        ],
        "line 10: NumericEquals vaultd:ClientUid: value 'x' is not a number",
        id="bad-number",
    ),
    pytest.param(
        [SID, EFFECT, ACTION, RESOURCE, '"Condition": {"DateLessThan": {"aws:CurrentTime": "y"}}'],
        "value 'y' is not an ISO 8601 time",
        id="bad-date",
    ),
    pytest.param(
        [
            SID,
            EFFECT,
            ACTION,
            RESOURCE,
            '"Condition": {"Bool": {"vaultd:MultiFactorAuthPresent": 1}}',
        ],
        "value 1 is not true or false",
        id="bad-bool",
    ),
    pytest.param(
        [SID, EFFECT, ACTION, RESOURCE, '"Condition": {"NullIfExists": {"vaultd:Profile": true}}'],
        "Null takes no set qualifier and no IfExists",
        id="null-ifexists",
    ),
    pytest.param(
        [SID, EFFECT, ACTION, RESOURCE, '"Condition": {"StringEquals": {"vaultd:Profile": []}}'],
        "needs at least one value",
        id="no-values",
    ),
    pytest.param(
        [SID, EFFECT, ACTION, RESOURCE, '"Condition": {}'],
        "line 10: Condition must be a non-empty object",
        id="empty-condition",
    ),
    pytest.param(
        [
            SID,
            EFFECT,
            ACTION,
            RESOURCE,
            '"Condition": {"StringEquals": {"vaultd:Profile": "a", "VAULTD:profile": "b"}}',
        ],
        "names vaultd:Profile twice",
        id="key-twice-by-case",
    ),
    pytest.param(
        [SID, EFFECT, '"Effect": "Allow"', ACTION, RESOURCE],
        "statement 2 (Sid DenyCurl), line 8: invalid JSON: column 7: duplicate key 'Effect'",
        id="duplicate-json-key",
    ),
    pytest.param(
        [SID, EFFECT, ACTION, RESOURCE + ","],
        "statement 2 (Sid DenyCurl), line 10: invalid JSON: column 5: expected a string key",
        id="trailing-comma",
    ),
]


@pytest.mark.parametrize(("members", "expected"), VALIDATION)
def test_validation_names_statement_and_line(members: list[str], expected: str) -> None:
    problems = [str(p) for p in validate(doc_with(*members))]
    assert any(expected in p for p in problems), problems
    with pytest.raises(PolicyInvalid) as info:
        parse_policy(doc_with(*members))
    assert info.value.code == "POLICY_INVALID"
    assert info.value.line is not None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}', 'missing "Version"'),
        ('{"Version": "2008-10-17", "Statement": []}', 'Version must be "2012-10-17"'),
        ('{"Version": "2012-10-17"}', "missing Statement"),
        ('{"Version": "2012-10-17", "Statement": []}', "at least one statement"),
        ('{"Version": "2012-10-17", "Statement": [1]}', "statement 1 must be a JSON object"),
        ("[]", "a policy must be a JSON object"),
        ("", "invalid JSON: column 1: unexpected end of text"),
        ('{"a": 1} x', "unexpected text after the JSON document"),
        ('{"a": "\\ud800"}', "unpaired surrogate"),
        ('{"a": ' + "1" * 100 + "}", "number too long"),
        ("[" * 40 + "]" * 40, "nested more than 32 deep"),
    ],
)
def test_document_level_problems(text: str, expected: str) -> None:
    problems = validate(text)
    assert any(expected in str(p) for p in problems), problems


def test_all_problems_are_listed_and_parse_names_the_first() -> None:
    text = doc_with('"Sid": "Two"', '"Effect": "Maybe"', '"Action": "vaultd:Nope"', RESOURCE)
    problems = validate(text)
    assert [(p.line, p.statement.sid if p.statement else None) for p in problems] == [
        (7, "Two"),
        (8, "Two"),
    ]
    with pytest.raises(PolicyInvalid, match=r"line 7: Effect.*and 1 more") as info:
        parse_policy(text, source="policy file p.json")
    assert str(info.value).startswith("policy file p.json is invalid: statement 2 (Sid Two)")
    assert (info.value.line, info.value.statement) == (7, "Two")


def test_single_statement_object_is_accepted() -> None:
    text = (
        '{"Version": "2012-10-17",\n'
        '"Statement": {"Sid": "One", "Effect": "Allow", "Action": "*", "Resource": "*"}}'
    )
    assert validate(text) == []
    assert evaluate(parse_policy(text), "vaultd:Export", PROD, {}).allowed
    duplicate = text.replace('"Effect"', '"Action": "*", "Effect"')
    assert [str(p) for p in validate(duplicate)] == [
        "statement 1 (Sid One), line 2: invalid JSON: column 63: duplicate key 'Action'"
    ]
    top = text.replace('"Statement"', '"Version": "2012-10-17", "Statement"')
    assert [str(p) for p in validate(top)] == [
        "line 2: invalid JSON: column 1: duplicate key 'Version'"
    ]


def test_size_cap_counts_characters_without_whitespace() -> None:
    def with_sid(length: int, padding: int = 0) -> str:
        statement = {"Sid": "S" * length, "Effect": "Allow", "Action": "*", "Resource": "*"}
        text = json.dumps(
            {"Version": "2012-10-17", "Statement": [statement]}, separators=(",", ":")
        )
        return text.replace(",", "," + " \n" * padding, 1)

    room = MAX_POLICY_CHARS - len(with_sid(0))
    assert len(with_sid(room)) == MAX_POLICY_CHARS
    assert validate(with_sid(room)) == []
    assert validate(with_sid(room, padding=25_000)) == []
    too_big = validate(with_sid(room + 1))
    assert [p.message for p in too_big] == [
        f"policy has {MAX_POLICY_CHARS + 1} characters without whitespace; "
        f"the limit is {MAX_POLICY_CHARS}"
    ]
    assert "the limit is 131072" in str(validate(" " * 200_000)[0])


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("vaultd:clientuid", "1000", ("vaultd:ClientUid", 1000)),
        ("vaultd:MultiFactorAuthPresent", "TRUE", ("vaultd:MultiFactorAuthPresent", True)),
        ("vaultd:MultiFactorAuthAge", "0", ("vaultd:MultiFactorAuthAge", 0)),
        ("vaultd:ClientExecutable", "/x=y", ("vaultd:ClientExecutable", "/x=y")),
        ("aws:CurrentTime", "2026-01-01T02:00:00+02:00", ("aws:CurrentTime", JAN)),
    ],
)
def test_parse_context_value(name: str, text: str, expected: tuple[str, Any]) -> None:
    assert parse_context_value(name, text) == expected


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("vaultd:ClientUid", "10x"),
        ("vaultd:MultiFactorAuthPresent", "yes"),
        ("aws:CurrentTime", "2026-01-01T00:00:00"),
        ("aws:CurrentTime", "soon"),
        ("vaultd:Nope", "1"),
    ],
)
def test_parse_context_value_rejects(name: str, text: str) -> None:
    with pytest.raises(PolicyContextInvalid):
        parse_context_value(name, text)


# --- robustness ------------------------------------------------------------------------------

WORDS = st.sampled_from(
    [
        "Version",
        "2012-10-17",
        "Statement",
        "Sid",
        "Effect",
        "Allow",
        "Deny",
        "Action",
        "NotAction",
        "Resource",
        "NotResource",
        "Condition",
        "vaultd:*",
        "vaultd:Exec",
        "profile/*",
        "*",
        "StringLike",
        "ForAllValues:NumericLessThanIfExists",
        "Null",
        "DateEquals",
        "Bool",
        "vaultd:ClientUid",
        "aws:CurrentTime",
        "vaultd:MultiFactorAuthPresent",
        "true",
        "2026-01-01T00:00:00Z",
    ]
)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | WORDS | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(WORDS | st.text(), inner),
    max_leaves=25,
)


def mutate(text: str, cut: int, insert: str) -> str:
    cut = cut % (len(text) + 1)
    return text[:cut] + insert + text[cut:]


@settings(max_examples=300, deadline=None)
@given(doc=JSONISH, cut=st.integers(0, 10_000), insert=st.text(max_size=3), whole=st.booleans())
def test_parse_policy_raises_only_vault_errors(
    doc: Any, cut: int, insert: str, whole: bool
) -> None:
    text = json.dumps(doc)
    text = text if whole else mutate(text, cut, insert)
    try:
        parsed = parse_policy(text)
    except VaultError:
        assert validate(text)
        return
    assert validate(text) == []
    evaluate(parsed, GET, PROD, {MFA: True, NOW: JAN, "vaultd:ClientUid": 1, EXE: "/a"})


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_raises_only_vault_errors(text: str) -> None:
    try:
        parse_policy(text)
    except VaultError:
        return


# --- remembered decisions -----------------------------------------------------------------

SHELLS = {"StringLike": {"vaultd:ClientExecutable": ["*/bash", "*/sh"]}}
MEMO_POLICY = [
    allow(),
    deny(Condition=SHELLS),
    deny(resource="profile/prod", Condition={"NumericNotEquals": {"vaultd:ClientUid": 1000}}),
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([GET, "vaultd:Exec"]),
            st.sampled_from(["profile/prod", "profile/dev"]),
            st.sampled_from(["/usr/bin/aws", "/bin/bash", "/usr/bin/terraform"]),
            st.sampled_from([0, 1000, 1001]),
            st.integers(1, 5),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_a_remembered_decision_equals_a_fresh_evaluation(
    requests: list[tuple[str, str, str, int, int]],
) -> None:
    remembering = policy(*MEMO_POLICY)
    for action, resource, exe, uid, pid in requests:
        context: dict[str, Any] = {
            "vaultd:ClientExecutable": [exe],
            "vaultd:ClientUid": uid,
            "vaultd:ClientPid": pid,
        }
        fresh = evaluate(policy(*MEMO_POLICY), action, resource, context)
        assert evaluate(remembering, action, resource, context) == fresh


def test_keys_no_condition_names_do_not_split_the_memo() -> None:
    p = policy(*MEMO_POLICY)
    assert p.condition_keys == ("vaultd:ClientExecutable", "vaultd:ClientUid")
    for pid in range(1, 50):  # a new process each time, as each `aws` run is
        context: dict[str, Any] = {"vaultd:ClientUid": 1000, "vaultd:ClientPid": pid}
        assert evaluate(p, GET, PROD, context).allowed
    assert len(p._decisions) == 1


def test_a_policy_naming_the_time_is_evaluated_afresh_each_time() -> None:
    p = policy(allow(Condition={"DateLessThan": {"aws:CurrentTime": "2026-06-01T00:00:00Z"}}))
    before = {"aws:CurrentTime": datetime(2026, 5, 31, tzinfo=UTC)}
    after = {"aws:CurrentTime": datetime(2026, 6, 2, tzinfo=UTC)}
    assert evaluate(p, GET, PROD, before).allowed
    assert not evaluate(p, GET, PROD, after).allowed
    assert p._decisions == {}


def test_a_remembered_value_of_another_type_is_still_checked() -> None:
    p = policy(*MEMO_POLICY)
    assert evaluate(p, GET, "profile/dev", {"vaultd:ClientUid": 1}).allowed
    with pytest.raises(PolicyContextInvalid, match="ClientUid"):
        evaluate(p, GET, "profile/dev", {"vaultd:ClientUid": True})  # True == 1 in Python
    with pytest.raises(PolicyContextInvalid, match="ClientUid"):
        evaluate(p, GET, PROD, {"vaultd:ClientUid": 1000, "vaultd:clientuid": 1000})


DENY_SHELLS = deny(Condition={"StringLike": {"vaultd:ClientExecutable": ["*/bash"]}})
EXE = "vaultd:ClientExecutable"


@pytest.mark.parametrize(
    ("statements", "expected"),
    [
        ((allow(), DENY_SHELLS), ("unknown_key", 2)),  # a deny on it cannot be dodged
        ((allow(Condition={"StringLike": {EXE: ["*/aws"]}}),), ("unknown_key", 1)),
        ((allow(), deny(action="vaultd:Exec", Condition=DENY_SHELLS["Condition"])), ("allow", 1)),
        ((allow(),), ("allow", 1)),  # a policy that names no executable is unaffected
    ],
)
def test_a_requester_that_cannot_be_described_is_refused_where_named(
    statements: tuple[dict[str, Any], ...], expected: tuple[str, int]
) -> None:
    """Issue 13 Medium 5 (T33): a peer that exited has no executable; a statement naming the
    key refuses it instead of not applying."""
    context = {"vaultd:ClientUid": 1000}
    decision = evaluate(policy(*statements), GET, PROD, context, unknown=frozenset({EXE}))
    assert outcome(decision) == expected
    if expected[0] == "unknown_key":
        with pytest.raises(PolicyDenied, match="could not be read"):
            enforce(policy(*statements), GET, PROD, context, unknown=frozenset({EXE}))
