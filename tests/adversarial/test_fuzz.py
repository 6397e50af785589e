"""Parser robustness (docs/threat-model.md T17, G15): only the documented errors escape, never a
hang.

Each target takes untrusted bytes.  Hypothesis runs are deterministic (``derandomize``) and
bounded by ``VAULTD_FUZZ_EXAMPLES`` (default 150 per target; raise it for long runs).  The
fixed corpus in ``tests/fuzz_corpus/<target>/`` — inputs that once failed or sit on an edge —
is replayed on every run.  A hang is caught by a 10 s alarm per input (a bound on a runaway
parser, not a performance check).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaultd.core import envelope
from vaultd.core.access_policy import parse_policy
from vaultd.core.model import RecordKind
from vaultd.core.otp_ledger import OtpLedger
from vaultd.core.records import (
    decode_fido2_credential,
    decode_key_pair,
    decode_totp_seed,
    parse_key_pair_input,
    parse_totp_input,
    seed_record_name,
)
from vaultd.errors import (
    AuditTampered,
    BadRequest,
    FrameTooLarge,
    PolicyInvalid,
    RecordCorrupt,
    StoreError,
    StoreUnreadable,
)
from vaultd.ipc.protocol import decode_body, decode_frame, parse_request
from vaultd.store.audit import parse_line
from vaultd.store.files import SealedStore
from vaultd.store.state import StateFile
from vaultd.testing.clock import FakeClock
from vaultd.testing.fakes import FakeGenerationAnchor, FakeKeyWrapper

CORPUS = Path(__file__).parent.parent / "fuzz_corpus"
EXAMPLES = int(os.environ.get("VAULTD_FUZZ_EXAMPLES", "150"))
KEY = bytes(range(32))
SERIAL = "arn:aws:iam::123456789012:mfa/alice"
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class Hang(Exception):
    """A target ran past the alarm."""


@contextmanager
def no_hang(seconds: float = 10.0) -> Iterator[None]:
    def alarm(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _json(data: bytes) -> object:
    """Arbitrary bytes as the JSON value a caller would have decoded (or the raw text)."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return data.decode("utf-8", "replace")


def _state_file(tmp: Path) -> Callable[[bytes], None]:
    """The daemon's state.json as read at start: load, then rebuild the ledger."""

    def load(data: bytes) -> None:
        path = tmp / "state.json"
        path.write_bytes(data)
        ledger = StateFile(path).load_ledger()
        if ledger is not None:
            OtpLedger.from_dict(ledger)

    return load


def _store(tmp: Path) -> Callable[[bytes], None]:
    """A SealedStore over a FakeKeyWrapper: write the bytes as the store file, then read it."""

    def load(data: bytes) -> None:
        directory = tmp / "store"
        directory.mkdir(mode=0o700, exist_ok=True)
        path = directory / "store.vault"
        path.write_bytes(data)
        path.chmod(0o600)
        store = SealedStore(path, FakeKeyWrapper(KEY), FakeGenerationAnchor(1), FakeClock())
        for info in store.list():
            store.get(info.kind, info.name)

    return load


@dataclass(frozen=True)
class Target:
    """One parser: how to feed it bytes and which errors it documents."""

    run: Callable[[bytes], object]
    allowed: tuple[type[Exception], ...]


def targets(tmp: Path) -> dict[str, Target]:
    """Every fuzz target by corpus directory name."""
    wrapper = FakeKeyWrapper(KEY, key_id="fuzz-key")
    return {
        "frame": Target(decode_frame, (BadRequest, FrameTooLarge)),
        "body": Target(decode_body, (BadRequest,)),
        "request": Target(
            lambda d: parse_request(o) if isinstance(o := _json(d), dict) else None,
            (BadRequest,),
        ),
        "envelope": Target(
            lambda d: envelope.unseal(wrapper, d, kind="key_pair", name="dev", generation=1),
            (RecordCorrupt,),
        ),
        "store": Target(_store(tmp), (StoreError,)),
        "audit_line": Target(parse_line, (AuditTampered,)),
        "policy": Target(lambda d: parse_policy(d.decode("utf-8", "replace")), (PolicyInvalid,)),
        "key_pair_record": Target(lambda d: decode_key_pair(d, root=False), (RecordCorrupt,)),
        "totp_seed_record": Target(
            lambda d: decode_totp_seed(d, name=seed_record_name(SERIAL)), (RecordCorrupt,)
        ),
        "fido2_record": Target(lambda d: decode_fido2_credential(d, name="k"), (RecordCorrupt,)),
        "key_pair_input": Target(
            lambda d: parse_key_pair_input(d.decode("utf-8", "replace"), root=False),
            (BadRequest,),
        ),
        "totp_input": Target(
            lambda d: parse_totp_input(d.decode("utf-8", "replace"), serial=SERIAL),
            (BadRequest,),
        ),
        "ledger": Target(lambda d: OtpLedger.from_dict(_json(d)), (StoreUnreadable,)),
        "state_file": Target(_state_file(tmp), (StoreUnreadable,)),
    }


def check(target: Target, data: bytes) -> None:
    """Run one input: it parses, or raises one of the target's documented errors."""
    try:
        with no_hang():
            target.run(data)
    except target.allowed:
        pass


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.glob("*/*") if p.is_file())


KNOWN_BUGS: dict[str, str] = {}


def corpus_params() -> list[object]:
    """Corpus files as parameters; the ones that expose a known bug are strict xfails."""
    params: list[object] = []
    for path in corpus_files():
        key = f"{path.parent.name}/{path.name}"
        marks = (
            [pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[key])] if key in KNOWN_BUGS else []
        )
        params.append(pytest.param(path, id=key, marks=marks))
    return params


def test_every_target_has_a_corpus(tmp_path: Path) -> None:
    """The corpus covers every target, and holds only small files."""
    assert {p.parent.name for p in corpus_files()} == set(targets(tmp_path))
    assert all(p.stat().st_size <= 64 * 1024 for p in corpus_files())


@pytest.mark.parametrize("path", corpus_params())
def test_corpus_replays_cleanly(path: Path, tmp_path: Path) -> None:
    """Every saved input parses or raises only a documented error."""
    check(targets(tmp_path)[path.parent.name], path.read_bytes())


def _mutations(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    """Corpus seeds flipped, cut, extended or spliced, plus plain random bytes."""
    seed = st.sampled_from(seeds)

    def flip(s: bytes, i: int, b: int) -> bytes:
        return s[: i % (len(s) or 1)] + bytes([b]) + s[i % (len(s) or 1) + 1 :] if s else bytes([b])

    return st.one_of(
        st.binary(max_size=512),
        st.builds(flip, seed, st.integers(0, 4096), st.integers(0, 255)),
        st.builds(lambda s, n: s[:n], seed, st.integers(0, 4096)),
        st.builds(lambda s, tail: s + tail, seed, st.binary(max_size=64)),
        st.builds(lambda a, b, n: a[:n] + b[n:], seed, seed, st.integers(0, 4096)),
    )


def _seeds(name: str) -> list[bytes]:
    """The corpus of ``name`` without the inputs of known bugs (those are xfails above)."""
    paths = sorted((CORPUS / name).iterdir())
    return [p.read_bytes() for p in paths if f"{name}/{p.name}" not in KNOWN_BUGS] or [b""]


TARGET_NAMES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_fuzz_target(name: str, tmp_path: Path) -> None:
    """Hypothesis mutates the corpus of ``name``; only documented errors may escape."""
    target = targets(tmp_path)[name]

    @FUZZ
    @given(_mutations(_seeds(name)))
    def run(data: bytes) -> None:
        check(target, data)

    run()


JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=80)
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)
OPS = st.sampled_from(
    ["credentials", "approve", "deny", "status", "lock", "unlock", "events", "breakglass", "x"]
)
FIELDS = st.sampled_from(
    ["profile", "id", "code", "pin", "seal", "interactive", "action", "reason", "name", "v"]
)


@FUZZ
@given(
    OPS,
    st.dictionaries(FIELDS, JSON, max_size=4),
    st.sampled_from([1, 1, 2, True, "1", None]),
)
def test_request_schema(op: str, fields: dict[str, object], version: object) -> None:
    """Schema-shaped requests: a valid request object, or BAD_REQUEST naming a field."""
    obj = {**fields, "op": op, "v": version}
    try:
        with no_hang():
            request = parse_request(obj)
    except BadRequest as exc:
        assert "field" in str(exc)
        return
    assert type(version) is int and version == 1
    assert request.op == op


@FUZZ
@given(JSON)
def test_ledger_from_arbitrary_json(data: object) -> None:
    """OtpLedger.from_dict: any JSON value rebuilds a ledger or raises STORE_UNREADABLE."""
    try:
        with no_hang():
            OtpLedger.from_dict(data)
    except StoreUnreadable:
        pass


def test_a_valid_store_file_loads(tmp_path: Path) -> None:
    """The store target is not vacuous: the corpus's valid store opens its record."""
    path = tmp_path / "store"
    path.mkdir(mode=0o700)
    data = (CORPUS / "store" / "valid.vault").read_bytes()
    (path / "store.vault").write_bytes(data)
    (path / "store.vault").chmod(0o600)
    store = SealedStore(
        path / "store.vault", FakeKeyWrapper(KEY), FakeGenerationAnchor(1), FakeClock()
    )
    assert store.get(RecordKind.KEY_PAIR, "dev").startswith(b"{")
