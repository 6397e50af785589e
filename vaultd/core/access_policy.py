"""Access policies with IAM semantics: parse, validate and evaluate, as pure code.

A policy is an IAM-style JSON document (``Version`` "2012-10-17", ``Statement``) over the
actions in :data:`ACTIONS` and the resources ``profile/NAME``.  Evaluation follows IAM: deny by
default, an explicit allow is needed, and an explicit deny wins whatever the order.

vaultd limits (documented choices where IAM leaves room):

* at most :data:`MAX_POLICY_CHARS` characters not counting whitespace (an IAM managed policy's
  limit) and :data:`MAX_POLICY_TEXT` characters in all; JSON nesting at most 32 deep;
* ``Version`` is required; ``Principal``, policy variables (``${...}``) and empty lists or
  blocks are rejected;
* ``String*`` operators apply to every key (numbers and booleans compare as their JSON text);
  ``Numeric*``, ``Date*`` and ``Bool`` apply only to keys of that type;
* an empty list in the context counts as a missing key, except that ``ForAnyValue:`` with
  ``...IfExists`` is true only when the key is absent;
* without a set qualifier, a list in the context matches when any element matches, and a
  negated operator is the negation of its positive form;
* keys the caller could not read (``unknown``) fail closed: a statement for the action and
  resource that names one refuses the request.

Executable conditions are advisory against same-uid code (it can run an allowed program
with its own arguments, or trace it); README says so to users.
"""

from __future__ import annotations

import json
import math
import operator
import re
from bisect import bisect_right
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any, Literal, NoReturn, TypeAlias

from vaultd.core.model import PROFILE_NAME_RE, utc
from vaultd.errors import PolicyContextInvalid, PolicyDenied, PolicyInvalid

VERSION = "2012-10-17"
MAX_POLICY_CHARS = 10_240
MAX_POLICY_TEXT = 131_072
_MAX_DEPTH = 32
_MAX_NUMBER_LEN = 64

ACTIONS: tuple[str, ...] = (
    "vaultd:GetCredentials",
    "vaultd:Exec",
    "vaultd:BreakGlass",
    "vaultd:Export",
    "vaultd:Rotate",
    "vaultd:AssumeRoot",
)


class KeyType(StrEnum):
    """The value type of a condition key."""

    STRING = "string"
    NUMERIC = "numeric"
    BOOL = "bool"
    DATE = "date"


CONDITION_KEYS: Mapping[str, KeyType] = {
    "vaultd:ClientExecutable": KeyType.STRING,
    "vaultd:ClientUid": KeyType.NUMERIC,
    "vaultd:ClientPid": KeyType.NUMERIC,
    "vaultd:MultiFactorAuthPresent": KeyType.BOOL,
    "vaultd:MultiFactorAuthAge": KeyType.NUMERIC,
    "vaultd:Profile": KeyType.STRING,
    "vaultd:TargetAccount": KeyType.STRING,
    "vaultd:RootTask": KeyType.STRING,
    "aws:CurrentTime": KeyType.DATE,
}
_KEYS_FOLDED = {name.lower(): name for name in CONDITION_KEYS}

ACTION_HELP: Mapping[str, str] = {
    "vaultd:GetCredentials": "release a profile's session to `credential_process` (and to "
    "`vaultd login`'s federation session)",
    "vaultd:Exec": "release a profile's session to `vaultd exec`, `vaultd export` and the "
    "container credentials endpoint",
    "vaultd:BreakGlass": "open a break-glass session with stored root keys (after the touch "
    "with user verification)",
    "vaultd:Export": "reserved: no request is checked against it yet (`vaultd export` is "
    "`vaultd:Exec`)",
    "vaultd:Rotate": "rotate a stored access key (`vaultd rotate`)",
    "vaultd:AssumeRoot": "open an AssumeRoot break-glass session in a member account",
}
"""One line per action of :data:`ACTIONS` (docs/policy.md)."""

CONDITION_KEY_HELP: Mapping[str, str] = {
    "vaultd:ClientExecutable": "the requesting program and its parent's (a list: a statement "
    "may name either); unreadable, it fails closed. Advisory against same-uid code",
    "vaultd:ClientUid": "the requester's uid (from the socket's peer credentials)",
    "vaultd:ClientPid": "the requester's pid",
    "vaultd:MultiFactorAuthPresent": "true for actions checked after the user passed MFA "
    "(`vaultd:BreakGlass`, `vaultd:Rotate` once approved, `vaultd:AssumeRoot`); absent otherwise",
    "vaultd:MultiFactorAuthAge": "reserved: vaultd does not supply it yet (a condition on it "
    "matches as on a missing key)",
    "vaultd:Profile": "the profile's name (also the resource `profile/NAME`)",
    "vaultd:TargetAccount": "`vaultd:AssumeRoot` only: the member account id",
    "vaultd:RootTask": "`vaultd:AssumeRoot` only: the root task's name, such as "
    "`IAMAuditRootUserCredentials`",
    "aws:CurrentTime": "the daemon's clock at the request (for `Date*` operators)",
}
"""One line per condition key of :data:`CONDITION_KEYS` (docs/policy.md)."""


def reference() -> str:
    """docs/policy.md: every action and condition key, from the tables above."""
    lines = [
        "# Access policy actions and condition keys",
        "",
        "<!-- Generated: `python -c 'import vaultd.core.access_policy as p; "
        'print(p.reference(), end="")\' > docs/policy.md` -->',
        "",
        "Resources are `profile/NAME`. Evaluation follows IAM: deny by default, an explicit "
        "allow is needed, and an explicit deny wins.",
        "",
        "| action | what it allows |",
        "| --- | --- |",
        *(f"| `{a}` | {ACTION_HELP[a]} |" for a in ACTIONS),
        "",
        "| condition key | type | value |",
        "| --- | --- | --- |",
        *(f"| `{k}` | {t.value} | {CONDITION_KEY_HELP[k]} |" for k, t in CONDITION_KEYS.items()),
    ]
    return "\n".join(lines) + "\n"


_TIME_KEYS = frozenset(k for k, kind in CONDITION_KEYS.items() if kind is KeyType.DATE)
MEMO_SIZE = 1024
"""Decisions a policy remembers before it starts afresh."""
_ACTIONS_FOLDED = {name.lower(): name for name in ACTIONS}

Scalar: TypeAlias = str | int | bool | datetime
ContextValue: TypeAlias = Scalar | Sequence[Scalar]
DecisionKind: TypeAlias = Literal["explicit_deny", "allow", "implicit_deny", "unknown_key"]


# --- public result types -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatementRef:
    """Where a statement is: its 1-based index, its Sid and the line it starts on."""

    index: int
    sid: str | None
    line: int

    @property
    def label(self) -> str | int:
        """The Sid when there is one, else the index."""
        return self.sid if self.sid is not None else self.index

    def __str__(self) -> str:
        sid = f" (Sid {self.sid})" if self.sid is not None else ""
        return f"statement {self.index}{sid}"


@dataclass(frozen=True, slots=True)
class Problem:
    """One validation finding, with the statement and line it concerns when known."""

    message: str
    line: int | None = None
    statement: StatementRef | None = None

    def __str__(self) -> str:
        where = [str(self.statement)] if self.statement is not None else []
        if self.line is not None:
            where.append(f"line {self.line}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


@dataclass(frozen=True, slots=True)
class Condition:
    """One key under one operator, compiled; ``match`` tests one context element."""

    operator: str
    key: str
    kind: Literal["string", "numeric", "date", "bool", "null"]
    qualifier: Literal["", "ForAnyValue", "ForAllValues"]
    if_exists: bool
    negated: bool
    match: Callable[[Any], bool] = field(repr=False, compare=False)

    def holds(self, values: tuple[Scalar, ...] | None) -> bool:
        """Whether the condition is true for the context ``values`` (None: key absent)."""
        if self.kind == "null":
            return self.match(not values)
        if self.qualifier == "ForAllValues":
            return all(self.match(v) != self.negated for v in values or ())
        if self.qualifier == "ForAnyValue":
            if values is None:
                return self.if_exists
            return any(self.match(v) != self.negated for v in values)
        if not values:
            return self.if_exists or self.negated
        return any(self.match(v) for v in values) != self.negated


@dataclass(frozen=True, slots=True)
class Statement:
    """A compiled statement; ``not_action``/``not_resource`` invert the pattern match."""

    ref: StatementRef
    effect: Literal["Allow", "Deny"]
    actions: tuple[re.Pattern[str], ...]
    not_action: bool
    resources: tuple[re.Pattern[str], ...]
    not_resource: bool
    conditions: tuple[Condition, ...]

    def applies(
        self, action: str, resource: str, context: Mapping[str, tuple[Scalar, ...]]
    ) -> bool:
        """Whether this statement matches the request."""
        if not self.targets(action, resource):
            return False
        return all(c.holds(context.get(c.key)) for c in self.conditions)

    def targets(self, action: str, resource: str) -> bool:
        """Whether the action and resource match (conditions aside)."""
        if any(p.fullmatch(action) for p in self.actions) == self.not_action:
            return False
        return any(p.fullmatch(resource) for p in self.resources) != self.not_resource

    def names_any(self, keys: frozenset[str] | set[str]) -> bool:
        """Whether a condition of this statement names one of ``keys`` (canonical spelling)."""
        return any(c.key in keys for c in self.conditions)


@dataclass(frozen=True, slots=True)
class Policy:
    """A parsed, valid policy.

    ``condition_keys`` are the keys its conditions name: only their values can change a
    decision, so decisions are remembered per action, resource and those values (at most
    :data:`MEMO_SIZE`), unless a condition names a time key.
    """

    statements: tuple[Statement, ...]
    condition_keys: tuple[str, ...] = field(init=False)
    _decisions: dict[Hashable, Decision] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys = {c.key for s in self.statements for c in s.conditions}
        object.__setattr__(self, "condition_keys", tuple(sorted(keys)))
        object.__setattr__(self, "_decisions", {})


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of an evaluation and the statement that decided it (None: implicit)."""

    allowed: bool
    kind: DecisionKind
    statement: StatementRef | None


# --- public functions ----------------------------------------------------------------------


def validate(text: str) -> list[Problem]:
    """Every problem in the policy ``text`` (empty when it is valid)."""
    return _compile(text)[1]


def parse_policy(text: str, *, source: str = "policy") -> Policy:
    """Parse and check a policy; raise :class:`PolicyInvalid` naming the first problem."""
    policy, problems = _compile(text)
    if policy is None:
        first = problems[0]
        more = len(problems) - 1
        tail = f" (and {more} more; `vaultd policy validate` lists them)" if more else ""
        raise PolicyInvalid(
            f"{source} is invalid: {first}{tail}; fix the policy document",
            line=first.line,
            statement=first.statement.label if first.statement is not None else None,
        )
    return policy


def evaluate(
    policy: Policy,
    action: str,
    resource: str,
    context: Mapping[str, ContextValue],
    *,
    unknown: frozenset[str] = frozenset(),
) -> Decision:
    """Decide ``action`` on ``resource`` as IAM would; raise on an unknown action or key.

    ``unknown`` names keys the caller could not read (a requester that exited or hid its
    executable): any statement for this action and resource that names one refuses the
    request (``unknown_key``), Allow and Deny alike, so a deny cannot be dodged (fail closed).
    """
    canonical = _ACTIONS_FOLDED.get(action.lower())
    if canonical is None:
        raise PolicyContextInvalid(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
    name = resource.removeprefix("profile/")
    if name == resource or not PROFILE_NAME_RE.fullmatch(name):
        raise PolicyContextInvalid(
            f"resource {resource!r} is not profile/NAME with NAME of [A-Za-z0-9._-]{{1,64}}"
        )
    if unknown:
        folded = {canonical_key(k) for k in unknown}
        for statement in policy.statements:
            if statement.names_any(folded) and statement.targets(canonical, resource):
                return Decision(False, "unknown_key", statement.ref)
    memo = _memo_key(policy, canonical, resource, context)
    if memo is not None and (known := policy._decisions.get(memo)) is not None:
        return known
    decision = _decide(policy, canonical, resource, _normalize_context(context))
    if memo is not None:
        if len(policy._decisions) >= MEMO_SIZE:
            policy._decisions.clear()
        policy._decisions[memo] = decision
    return decision


def _memo_key(
    policy: Policy, action: str, resource: str, context: Mapping[str, ContextValue]
) -> Hashable | None:
    """What a decision depends on, or None when it must be evaluated afresh.

    Not for policies naming a time key, nor for a context spelling a key in another case (the
    full check names the problem). Values keep their type, so ``True`` never stands for ``1``.
    """
    if (
        _TIME_KEYS.intersection(policy.condition_keys)
        or not context.keys() <= CONDITION_KEYS.keys()
    ):
        return None
    values: list[object] = []
    for key in policy.condition_keys:
        raw = context.get(key)
        items = tuple(raw) if isinstance(raw, list | tuple) else (raw,)
        values.append(tuple((type(v), v) for v in items))
    memo = (action, resource, tuple(values))
    try:
        hash(memo)
    except TypeError:
        return None
    return memo


def _decide(
    policy: Policy, action: str, resource: str, ctx: Mapping[str, tuple[Scalar, ...]]
) -> Decision:
    allow: StatementRef | None = None
    for statement in policy.statements:
        if not statement.applies(action, resource, ctx):
            continue
        if statement.effect == "Deny":
            return Decision(False, "explicit_deny", statement.ref)
        allow = allow or statement.ref
    if allow is not None:
        return Decision(True, "allow", allow)
    return Decision(False, "implicit_deny", None)


def enforce(
    policy: Policy,
    action: str,
    resource: str,
    context: Mapping[str, ContextValue],
    *,
    unknown: frozenset[str] = frozenset(),
) -> Decision:
    """Like :func:`evaluate`, but raise :class:`PolicyDenied` unless the request is allowed."""
    decision = evaluate(policy, action, resource, context, unknown=unknown)
    if decision.kind == "unknown_key" and decision.statement is not None:
        raise PolicyDenied(
            f"{action} on {resource} is refused: policy {decision.statement} (line "
            f"{decision.statement.line}) names a fact of the requesting process that could "
            "not be read (it exited or changed); run the request again from that program",
            statement=decision.statement.label,
        )
    if decision.statement is None:
        raise PolicyDenied(
            f"no policy statement allows {action} on {resource}; "
            "add an Allow statement for it to the policy",
            statement=None,
        )
    if not decision.allowed:
        raise PolicyDenied(
            f"{action} on {resource} is denied by policy {decision.statement} "
            f"(line {decision.statement.line}); change that statement to allow it",
            statement=decision.statement.label,
        )
    return decision


@cache
def default_policy() -> Policy:
    """The shipped default policy (``default_policy.json`` next to this module)."""
    text = resources.files(__package__).joinpath("default_policy.json").read_text("utf-8")
    return parse_policy(text, source="the default policy")


def canonical_key(name: str) -> str:
    """The canonical spelling of a condition key (names are case-insensitive)."""
    key = _KEYS_FOLDED.get(name.lower())
    if key is None:
        raise PolicyContextInvalid(
            f"unknown condition key {name!r}; known: {', '.join(CONDITION_KEYS)}"
        )
    return key


def parse_context_value(name: str, text: str) -> tuple[str, Scalar]:
    """Read a ``KEY=VALUE`` context value by the key's type (int, true/false, RFC 3339)."""
    key = canonical_key(name)
    kind = CONDITION_KEYS[key]
    if kind is KeyType.STRING:
        return key, text
    if kind is KeyType.NUMERIC:
        if re.fullmatch(r"-?[0-9]{1,18}", text):
            return key, int(text)
    elif kind is KeyType.BOOL:
        if text.lower() in ("true", "false"):
            return key, text.lower() == "true"
    else:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            if when.tzinfo is not None:
                return key, when.astimezone(UTC)
    want = {
        KeyType.NUMERIC: "an integer",
        KeyType.BOOL: "true or false",
        KeyType.DATE: "an RFC 3339 time with an offset, e.g. 2026-01-01T12:00:00Z",
    }[kind]
    raise PolicyContextInvalid(f"context value for {key} must be {want}")


def _normalize_context(context: Mapping[str, ContextValue]) -> dict[str, tuple[Scalar, ...]]:
    out: dict[str, tuple[Scalar, ...]] = {}
    for name, raw in context.items():
        key = canonical_key(name)
        if key in out:
            raise PolicyContextInvalid(f"context key {key} is given twice (keys ignore case)")
        items = tuple(raw) if isinstance(raw, list | tuple) else (raw,)
        out[key] = tuple(_checked(key, v) for v in items)
    return out


def _checked(key: str, value: Any) -> Scalar:
    kind = CONDITION_KEYS[key]
    if kind is KeyType.STRING and isinstance(value, str):
        return value
    if kind is KeyType.NUMERIC and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is KeyType.BOOL and isinstance(value, bool):
        return value
    if kind is KeyType.DATE and isinstance(value, datetime):
        return utc(value)
    raise PolicyContextInvalid(f"context value for {key} must be of type {kind.value}")


# --- a small JSON reader that keeps line numbers and refuses duplicate keys ----------------


@dataclass(frozen=True, slots=True)
class _Node:
    value: _Json
    line: int


_Json: TypeAlias = "bool | int | float | str | list[_Node] | dict[str, _Node] | None"

_WS = re.compile(r"[ \t\n\r]*")
_STRING = re.compile(r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"')
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_LITERALS: tuple[tuple[str, bool | None], ...] = (("true", True), ("false", False), ("null", None))


class _Stop(Exception):
    """Internal: a syntax error ends reading; carries the problem."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


class _Reader:
    """Reads JSON into :class:`_Node` trees; ``frames``/``trail`` track the open containers."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.starts = [0, *(m.end() for m in re.finditer("\n", text))]
        self.frames: list[tuple[int, dict[str, _Node] | list[_Node]]] = []
        self.trail: list[str | int] = []

    def line(self, pos: int) -> int:
        return bisect_right(self.starts, pos)

    def fail(self, message: str) -> NoReturn:
        line = self.line(self.pos)
        column = self.pos - self.starts[line - 1] + 1
        raise _Stop(Problem(f"invalid JSON: column {column}: {message}", line, self._statement()))

    def _statement(self) -> StatementRef | None:
        """The statement being read, if any (a list under "Statement" adds one level)."""
        if len(self.frames) < 2 or self.trail[:1] != ["Statement"]:
            return None
        index, at = 1, 1
        if isinstance(self.frames[1][1], list):
            if len(self.frames) < 3 or not isinstance(self.trail[1], int):
                return None
            index, at = self.trail[1] + 1, 2
        line, members = self.frames[at]
        if not isinstance(members, dict):
            return None
        sid = members.get("Sid")
        text = sid.value if sid is not None and isinstance(sid.value, str) else ""
        return StatementRef(index, text if _SID.fullmatch(text) else None, line)

    def document(self) -> _Node:
        node = self.value()
        self.pos = self._ws()
        if self.pos != len(self.text):
            self.fail("unexpected text after the JSON document")
        return node

    def _ws(self) -> int:
        m = _WS.match(self.text, self.pos)
        return m.end() if m else self.pos

    def value(self) -> _Node:
        self.pos = self._ws()
        if len(self.frames) >= _MAX_DEPTH:
            self.fail(f"JSON nested more than {_MAX_DEPTH} deep")
        line, ch = self.line(self.pos), self.text[self.pos : self.pos + 1]
        if ch == "{":
            return _Node(self.object(line), line)
        if ch == "[":
            return _Node(self.array(line), line)
        if ch == '"':
            return _Node(self.string(), line)
        number = _NUMBER.match(self.text, self.pos)
        if number:
            if len(number.group()) > _MAX_NUMBER_LEN:
                self.fail("number too long")
            self.pos = number.end()
            is_float = number.group(1) or number.group(2)
            return _Node(float(number.group()) if is_float else int(number.group()), line)
        for word, literal in _LITERALS:
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return _Node(literal, line)
        self.fail("expected a JSON value" if ch else "unexpected end of text")

    def string(self) -> str:
        m = _STRING.match(self.text, self.pos)
        if m is None:
            self.fail("unterminated string, bad escape or control character in a string")
        value: str = json.loads(m.group())
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            self.fail("string holds an unpaired surrogate escape")
        self.pos = m.end()
        return value

    def _more(self, closing: str) -> bool:
        """Consume a comma (True: more follows) or ``closing`` (False)."""
        self.pos = self._ws()
        ch = self.text[self.pos : self.pos + 1]
        if ch not in (",", closing) or not ch:
            self.fail(f"expected ',' or '{closing}'")
        self.pos += 1
        return ch == ","

    def _empty(self, closing: str) -> bool:
        self.pos = self._ws()
        if self.text.startswith(closing, self.pos):
            self.pos += 1
            return True
        return False

    def array(self, line: int) -> list[_Node]:
        self.pos += 1
        items: list[_Node] = []
        if self._empty("]"):
            return items
        self.frames.append((line, items))
        more = True
        while more:
            self.trail.append(len(items))
            items.append(self.value())
            self.trail.pop()
            more = self._more("]")
        self.frames.pop()
        return items

    def object(self, line: int) -> dict[str, _Node]:
        self.pos += 1
        members: dict[str, _Node] = {}
        if self._empty("}"):
            return members
        self.frames.append((line, members))
        more = True
        while more:
            self.pos = self._ws()
            if not self.text.startswith('"', self.pos):
                self.fail("expected a string key")
            key_pos = self.pos
            key = self.string()
            if key in members:
                self.pos = key_pos
                self.fail(f"duplicate key {key!r}")
            self.pos = self._ws()
            if not self.text.startswith(":", self.pos):
                self.fail("expected ':'")
            self.pos += 1
            self.trail.append(key)
            members[key] = self.value()
            self.trail.pop()
            more = self._more("}")
        self.frames.pop()
        return members


# --- compiling a document into statements --------------------------------------------------


def _glob(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    """IAM wildcards: ``*`` any run of characters, ``?`` exactly one."""
    body = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


@dataclass(frozen=True, slots=True)
class _OpSpec:
    kind: Literal["string", "numeric", "date", "bool", "null"]
    negated: bool
    test: Literal["eq", "eq_ci", "like", "lt", "le", "gt", "ge"]


_OPERATORS: dict[str, _OpSpec] = {
    "StringEquals": _OpSpec("string", False, "eq"),
    "StringNotEquals": _OpSpec("string", True, "eq"),
    "StringEqualsIgnoreCase": _OpSpec("string", False, "eq_ci"),
    "StringNotEqualsIgnoreCase": _OpSpec("string", True, "eq_ci"),
    "StringLike": _OpSpec("string", False, "like"),
    "StringNotLike": _OpSpec("string", True, "like"),
    "NumericEquals": _OpSpec("numeric", False, "eq"),
    "NumericNotEquals": _OpSpec("numeric", True, "eq"),
    "NumericLessThan": _OpSpec("numeric", False, "lt"),
    "NumericLessThanEquals": _OpSpec("numeric", False, "le"),
    "NumericGreaterThan": _OpSpec("numeric", False, "gt"),
    "NumericGreaterThanEquals": _OpSpec("numeric", False, "ge"),
    "DateEquals": _OpSpec("date", False, "eq"),
    "DateNotEquals": _OpSpec("date", True, "eq"),
    "DateLessThan": _OpSpec("date", False, "lt"),
    "DateLessThanEquals": _OpSpec("date", False, "le"),
    "DateGreaterThan": _OpSpec("date", False, "gt"),
    "DateGreaterThanEquals": _OpSpec("date", False, "ge"),
    "Bool": _OpSpec("bool", False, "eq"),
    "Null": _OpSpec("null", False, "eq"),
}
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DECIMAL = re.compile(r"-?[0-9]{1,18}(\.[0-9]{1,18})?")
_RESOURCE = re.compile(r"profile/[A-Za-z0-9._*?-]+")
_SID = re.compile(r"[A-Za-z0-9]+")
_TOP_KEYS = ("Version", "Id", "Statement")
_STATEMENT_KEYS = ("Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition")


def _as_text(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


class _Compiler:
    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.ref: StatementRef | None = None

    def problem(self, message: str, line: int) -> None:
        self.problems.append(Problem(message, line, self.ref))

    def policy(self, root: _Node) -> tuple[Statement, ...]:
        if not isinstance(root.value, dict):
            self.problem("a policy must be a JSON object", root.line)
            return ()
        doc = root.value
        for name, node in doc.items():
            if name not in _TOP_KEYS:
                self.problem(
                    f"unknown element {name!r}; allowed: {', '.join(_TOP_KEYS)}", node.line
                )
        version = doc.get("Version")
        if version is None:
            self.problem(f'missing "Version": "{VERSION}"', root.line)
        elif version.value != VERSION:
            self.problem(f'Version must be "{VERSION}"', version.line)
        if "Id" in doc and not isinstance(doc["Id"].value, str):
            self.problem("Id must be a string", doc["Id"].line)
        body = doc.get("Statement")
        if body is None:
            self.problem("missing Statement", root.line)
            return ()
        nodes = body.value if isinstance(body.value, list) else [body]
        if not nodes:
            self.problem("Statement must hold at least one statement", body.line)
        sids: dict[str, int] = {}
        out = [self.statement(i, node, sids) for i, node in enumerate(nodes, 1)]
        return tuple(s for s in out if s is not None)

    def statement(self, index: int, node: _Node, sids: dict[str, int]) -> Statement | None:
        self.ref = None
        if not isinstance(node.value, dict):
            self.problems.append(Problem(f"statement {index} must be a JSON object", node.line))
            return None
        st = node.value
        sid_node = st.get("Sid")
        sid = sid_node.value if sid_node is not None and isinstance(sid_node.value, str) else None
        self.ref = StatementRef(index, sid if sid and _SID.fullmatch(sid) else None, node.line)
        before = len(self.problems)
        if sid_node is not None:
            if sid is None or not _SID.fullmatch(sid):
                self.problem("Sid must be a non-empty string of A-Z, a-z and 0-9", sid_node.line)
            elif sid in sids:
                self.problem(f"duplicate Sid {sid} (also statement {sids[sid]})", sid_node.line)
            else:
                sids[sid] = index
        for name, child in st.items():
            if name in ("Principal", "NotPrincipal"):
                self.problem(
                    f"{name} is not used: vaultd policies apply to the local user", child.line
                )
            elif name not in _STATEMENT_KEYS:
                allowed = ", ".join(_STATEMENT_KEYS)
                self.problem(f"unknown element {name!r}; allowed: {allowed}", child.line)
        effect = st.get("Effect")
        if effect is None:
            self.problem("missing Effect (Allow or Deny)", node.line)
        elif effect.value not in ("Allow", "Deny"):
            self.problem(f"Effect must be Allow or Deny, not {effect.value!r}", effect.line)
        actions, not_action = self.either(st, "Action", node.line, self.action)
        resources, not_resource = self.either(st, "Resource", node.line, self.resource)
        conditions = self.conditions(st["Condition"]) if "Condition" in st else ()
        if len(self.problems) != before or effect is None:
            return None
        return Statement(
            self.ref,
            "Allow" if effect.value == "Allow" else "Deny",
            actions,
            not_action,
            resources,
            not_resource,
            conditions,
        )

    def either(
        self,
        st: dict[str, _Node],
        name: str,
        line: int,
        check: Callable[[str, int], re.Pattern[str] | None],
    ) -> tuple[tuple[re.Pattern[str], ...], bool]:
        """Read exactly one of ``name`` and ``Not<name>`` as a list of patterns."""
        plain, negated = st.get(name), st.get(f"Not{name}")
        if plain is not None and negated is not None:
            self.problem(f"has both {name} and Not{name}; use exactly one", negated.line)
        node = plain or negated
        if node is None:
            self.problem(f"needs {name} or Not{name}", line)
            return (), False
        patterns = [
            check(s.value, s.line) for s in self.strings(node, name) if isinstance(s.value, str)
        ]
        return tuple(p for p in patterns if p is not None), plain is None

    def strings(self, node: _Node, what: str) -> list[_Node]:
        items = node.value if isinstance(node.value, list) else [node]
        if not items:
            self.problem(f"{what} must not be an empty list", node.line)
        for item in items:
            if not isinstance(item.value, str):
                self.problem(f"{what} must be a string or a list of strings", item.line)
        return items

    def action(self, text: str, line: int) -> re.Pattern[str] | None:
        pattern = _glob(text, ignore_case=True)
        if not any(pattern.fullmatch(a) for a in ACTIONS):
            self.problem(f"unknown action {text}; known: {', '.join(ACTIONS)}", line)
            return None
        return pattern

    def resource(self, text: str, line: int) -> re.Pattern[str] | None:
        if text != "*" and not _RESOURCE.fullmatch(text):
            self.problem(
                f'resource {text!r} must be "*" or "profile/NAME" (NAME of A-Z a-z 0-9 . _ -, '
                "with * and ? wildcards)",
                line,
            )
            return None
        return _glob(text, ignore_case=False)

    def conditions(self, node: _Node) -> tuple[Condition, ...]:
        if not isinstance(node.value, dict) or not node.value:
            self.problem("Condition must be a non-empty object of operators", node.line)
            return ()
        out: list[Condition] = []
        for op_name, block in node.value.items():
            parsed = self.operator(op_name, block.line)
            if parsed is None:
                continue
            if not isinstance(block.value, dict) or not block.value:
                self.problem(f"{op_name} must be a non-empty object of keys", block.line)
                continue
            seen: set[str] = set()
            for key_name, values in block.value.items():
                key = _KEYS_FOLDED.get(key_name.lower())
                if key is None:
                    known = ", ".join(CONDITION_KEYS)
                    self.problem(f"unknown condition key {key_name}; known: {known}", values.line)
                elif key in seen:
                    self.problem(f"{op_name} names {key} twice (keys ignore case)", values.line)
                else:
                    seen.add(key)
                    cond = self.condition(op_name, parsed, key, values)
                    if cond is not None:
                        out.append(cond)
        return tuple(out)

    def operator(
        self, name: str, line: int
    ) -> tuple[_OpSpec, Literal["", "ForAnyValue", "ForAllValues"], bool] | None:
        qualifier: Literal["", "ForAnyValue", "ForAllValues"] = ""
        base = name
        for q in ("ForAnyValue", "ForAllValues"):
            if name.startswith(f"{q}:"):
                qualifier, base = q, name[len(q) + 1 :]
        if_exists = base.endswith("IfExists")
        spec = _OPERATORS.get(base.removesuffix("IfExists"))
        if spec is None:
            self.problem(f"unknown condition operator {name}", line)
            return None
        if spec.kind == "null" and (qualifier or if_exists):
            self.problem(f"{name}: Null takes no set qualifier and no IfExists", line)
            return None
        return spec, qualifier, if_exists

    def condition(
        self,
        op_name: str,
        parsed: tuple[_OpSpec, Literal["", "ForAnyValue", "ForAllValues"], bool],
        key: str,
        node: _Node,
    ) -> Condition | None:
        spec, qualifier, if_exists = parsed
        key_type = CONDITION_KEYS[key].value
        if spec.kind not in ("string", "null", key_type):
            self.problem(
                f"{op_name} compares {spec.kind} values but {key} is {key_type}", node.line
            )
            return None
        items = node.value if isinstance(node.value, list) else [node]
        if not items:
            self.problem(f"{op_name} {key}: needs at least one value", node.line)
            return None
        values = [self.value(spec, op_name, key, item) for item in items]
        if any(v is None for v in values):
            return None
        match = _matcher(spec, [v for v in values if v is not None])
        return Condition(op_name, key, spec.kind, qualifier, if_exists, spec.negated, match)

    def value(self, spec: _OpSpec, op_name: str, key: str, node: _Node) -> Any:
        raw = node.value
        parsed: Any = None
        if spec.kind == "string":
            if isinstance(raw, str | bool | int):
                parsed = raw if isinstance(raw, str) else _as_text(raw)
                if "${" in parsed:
                    self.problem(f"{op_name} {key}: policy variables are not supported", node.line)
                    return None
        elif spec.kind in ("bool", "null"):
            if isinstance(raw, bool):
                parsed = raw
            elif isinstance(raw, str) and raw.lower() in ("true", "false"):
                parsed = raw.lower() == "true"
        elif spec.kind == "numeric":
            parsed = _number(raw)
        else:
            parsed = _date(raw)
        if parsed is None:
            want = {
                "string": "a string",
                "bool": "true or false",
                "null": "true or false",
                "numeric": "a number",
                "date": "an ISO 8601 time or epoch seconds",
            }[spec.kind]
            self.problem(f"{op_name} {key}: value {raw!r} is not {want}", node.line)
        return parsed


def _number(raw: _Json) -> int | float | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return None
    if isinstance(raw, str):
        if not _DECIMAL.fullmatch(raw):
            return None
        return float(raw) if "." in raw else int(raw)
    return raw if math.isfinite(raw) else None


def _date(raw: _Json) -> datetime | None:
    try:
        if isinstance(raw, str):
            return utc(datetime.fromisoformat(raw))
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return _EPOCH + timedelta(seconds=raw)
    except (ValueError, OverflowError):
        return None
    return None


def _matcher(spec: _OpSpec, values: list[Any]) -> Callable[[Any], bool]:
    """A test of one context element against any of the policy ``values``."""
    if spec.kind == "string":
        if spec.test == "like":
            globs = [_glob(v, ignore_case=False) for v in values]
            return lambda v: any(g.fullmatch(_as_text(v)) for g in globs)
        if spec.test == "eq_ci":
            folded = {v.casefold() for v in values}
            return lambda v: _as_text(v).casefold() in folded
        exact = set(values)
        return lambda v: _as_text(v) in exact
    if spec.kind in ("bool", "null"):
        return lambda v: v in values
    compare = _COMPARE[spec.test]
    return lambda v: any(compare(v, p) for p in values)


def _compile(text: str) -> tuple[Policy | None, list[Problem]]:
    if len(text) > MAX_POLICY_TEXT:
        return None, [Problem(f"policy is {len(text)} characters; the limit is {MAX_POLICY_TEXT}")]
    size = sum(1 for ch in text if not ch.isspace())
    if size > MAX_POLICY_CHARS:
        return None, [
            Problem(
                f"policy has {size} characters without whitespace; the limit is {MAX_POLICY_CHARS}"
            )
        ]
    try:
        root = _Reader(text).document()
    except _Stop as stop:
        return None, [stop.problem]
    compiler = _Compiler()
    statements = compiler.policy(root)
    if compiler.problems:
        return None, compiler.problems
    return Policy(statements), []
