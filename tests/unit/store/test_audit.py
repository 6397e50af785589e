"""The audit log on a real directory: chain, MACs, head anchor, rotation, fail-closed writes,
tail and follow (docs/threat-model.md T14; F33, F34).

The MAC is a fake for the token's HMAC: HMAC-SHA256 under a fixed key in software, with the same
``mac(data) -> tag`` / ``mac_verify(data, tag)`` shape as ``TokenKey`` (the SoftHSM2 tier in
tests/integration/audit checks the real one).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vaultd.commands import audit as audit_cmd
from vaultd.errors import AuditError, AuditRecordTampered, AuditTampered
from vaultd.store import audit as audit_module
from vaultd.store.audit import (
    GENESIS,
    AuditLog,
    chain_files,
    follow,
    head_path,
    last_record,
    parse_line,
    rotated_files,
    tail,
    verify,
)
from vaultd.testing.clock import FakeClock

KEY = b"fake token audit key, tests only"


def fake_mac(data: bytes, key: bytes = KEY) -> bytes:
    """Stands in for ``TokenKey.mac`` (HMAC-SHA256 inside the token)."""
    return hmac.new(key, data, hashlib.sha256).digest()


def fake_mac_verify(data: bytes, tag: bytes, key: bytes = KEY) -> None:
    """Stands in for ``TokenKey.mac_verify``: raises ``AuditTampered`` on a mismatch."""
    if not hmac.compare_digest(fake_mac(data, key), tag):
        raise AuditTampered("MAC mismatch")


CLIENT = {"pid": 4242, "uid": 1000, "executable": "/usr/bin/aws", "cwd": "/home/alice"}


def write_records(log: AuditLog, count: int, start: int = 1) -> None:
    for i in range(start, start + count):
        log.record(
            "request", {"profile": f"p{i}", "action": "credential_process", "client": CLIENT}
        )


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "audit.log"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def log(path: Path, clock: FakeClock) -> AuditLog:
    return AuditLog(path, fake_mac, clock)


@pytest.fixture
def three(log: AuditLog, path: Path) -> list[bytes]:
    """A log of three records; returns its lines (with newlines)."""
    write_records(log, 3)
    return path.read_bytes().splitlines(keepends=True)


def bad(path: Path) -> AuditRecordTampered:
    with pytest.raises(AuditRecordTampered) as info:
        verify(path, fake_mac_verify)
    return info.value


# --- the format and the untouched log ----------------------------------------------------------


def test_untouched_log_verifies_and_lines_are_chained_and_maced(
    path: Path, three: list[bytes]
) -> None:
    assert verify(path, fake_mac_verify) == 3
    prev = GENESIS
    for seq, raw in enumerate(three, start=1):
        obj = json.loads(raw)
        assert (obj["seq"], obj["prev"], obj["event"]) == (seq, prev, "request")
        assert obj["time"] == "2026-01-01T00:00:00.000000Z"
        tag = bytes.fromhex(obj.pop("mac"))
        body = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
        assert tag == fake_mac(body)
        prev = hashlib.sha256(raw.rstrip(b"\n")).hexdigest()
    assert last_record(path).digest == prev
    head = json.loads(head_path(path).read_bytes())
    assert (head["seq"], head["digest"]) == (3, prev)
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_empty_log_verifies_as_zero_records(path: Path) -> None:
    assert verify(path, fake_mac_verify) == 0
    assert last_record(path).seq == 0


def test_a_new_writer_continues_the_chain(path: Path, three: list[bytes], clock: FakeClock) -> None:
    write_records(AuditLog(path, fake_mac, clock), 2, start=4)
    assert verify(path, fake_mac_verify) == 5


# --- tampering ----------------------------------------------------------------------------------


@pytest.mark.parametrize("flip", [0x01, 0x20, 0x80])
def test_every_single_byte_edit_names_its_record(path: Path, three: list[bytes], flip: int) -> None:
    data = path.read_bytes()
    ends = [sum(len(x) for x in three[: i + 1]) for i in range(len(three))]
    for pos in range(len(data)):
        record_line = next(i for i, end in enumerate(ends, start=1) if pos < end)
        edited = bytearray(data)
        edited[pos] ^= flip
        path.write_bytes(bytes(edited))
        err = bad(path)
        assert (err.path, err.line) == (str(path), record_line), (pos, err.message)
        assert f"line {record_line}" in err.message
    path.write_bytes(data)
    assert verify(path, fake_mac_verify) == 3


def test_deleted_record_is_named(path: Path, three: list[bytes]) -> None:
    path.write_bytes(three[0] + three[2])
    err = bad(path)
    assert (err.line, err.seq) == (2, 3)
    assert "sequence 3 where 2 was expected" in err.message


def test_swapped_records_are_named(path: Path, three: list[bytes]) -> None:
    path.write_bytes(three[1] + three[0] + three[2])
    err = bad(path)
    assert (err.line, err.seq) == (1, 2)


def test_duplicated_record_is_named(path: Path, three: list[bytes]) -> None:
    path.write_bytes(three[0] + three[1] + three[1] + three[2])
    err = bad(path)
    assert (err.line, err.seq) == (3, 2)


def test_truncated_last_line_is_torn(path: Path, three: list[bytes]) -> None:
    path.write_bytes(b"".join(three)[:-10])
    err = bad(path)
    assert err.line == 3
    assert "torn" in err.reason


def test_removing_the_last_record_is_caught_by_the_head_anchor(
    path: Path, three: list[bytes]
) -> None:
    path.write_bytes(three[0] + three[1])
    err = bad(path)
    assert (err.path, err.seq, err.line) == (str(head_path(path)), 3, None)
    assert "cut off the end" in err.reason


def test_removing_the_head_anchor_too_is_caught(path: Path, three: list[bytes]) -> None:
    path.write_bytes(three[0] + three[1])
    head_path(path).unlink()
    assert "head anchor is missing" in bad(path).reason


def test_a_forged_head_anchor_fails_its_mac(path: Path, three: list[bytes]) -> None:
    path.write_bytes(three[0] + three[1])
    head = json.loads(head_path(path).read_bytes())
    head.update(seq=2, digest=hashlib.sha256(three[1].rstrip(b"\n")).hexdigest())
    head_path(path).write_text(json.dumps(head))
    assert "MAC does not match" in bad(path).reason


def test_a_head_lagging_after_a_crash_is_accepted(
    path: Path, log: AuditLog, clock: FakeClock
) -> None:
    """The writer appends, then moves the head: a crash in between leaves the head one behind.

    That record was never released (``record`` had not returned), so the log is still valid;
    cutting it off is the documented limit of the head anchor.
    """
    write_records(log, 2)
    old_head = head_path(path).read_bytes()
    write_records(log, 1, start=3)
    head_path(path).write_bytes(old_head)
    assert verify(path, fake_mac_verify) == 3


def test_wrong_key_fails_at_the_first_record(path: Path, three: list[bytes]) -> None:
    def other_verify(data: bytes, tag: bytes) -> None:
        fake_mac_verify(data, tag, key=b"another token")

    with pytest.raises(AuditRecordTampered) as info:
        verify(path, other_verify)
    assert (info.value.line, info.value.seq) == (1, 1)
    assert "MAC does not match" in info.value.reason


# --- rotation -----------------------------------------------------------------------------------


def test_rotation_keeps_the_chain_across_files(path: Path, clock: FakeClock) -> None:
    log = AuditLog(path, fake_mac, clock, max_bytes=700)
    write_records(log, 10)
    rotated = rotated_files(path)
    assert len(rotated) >= 3
    assert rotated[0].name == "audit.log.1"
    assert chain_files(path) == [*rotated, path]
    assert verify(path, fake_mac_verify) == 10
    for older, newer in zip(chain_files(path), chain_files(path)[1:], strict=False):
        last = older.read_bytes().splitlines()[-1]
        first = json.loads(newer.read_bytes().splitlines()[0])
        assert newer.name in (path.name, f"audit.log.{first['seq']}")
        assert first["prev"] == hashlib.sha256(last).hexdigest()
        assert older.stat().st_size <= 700
    assert [json.loads(x)["seq"] for x in tail(path, 10)] == list(range(1, 11))


def test_rotated_files_are_verified_in_order(path: Path, clock: FakeClock) -> None:
    write_records(AuditLog(path, fake_mac, clock, max_bytes=700), 10)
    first, second = rotated_files(path)[:2]
    first_data = first.read_bytes()
    first.unlink()
    err = bad(path)
    assert (err.path, err.line, err.seq) == (str(second), 1, int(second.name.split(".")[-1]))
    first.write_bytes(first_data)
    renamed = path.with_name(f"audit.log.{int(second.name.split('.')[-1]) + 1}")
    second.rename(renamed)
    assert rotated_files(path)[1] == renamed  # still in its place in the order
    err = bad(path)
    assert (err.path, err.line) == (str(renamed), 1)
    assert "does not match its first seq" in err.reason


def test_a_crash_between_rotation_and_the_next_write_continues_the_chain(
    path: Path, clock: FakeClock
) -> None:
    write_records(AuditLog(path, fake_mac, clock, max_bytes=700), 4)
    path.rename(path.with_name(f"audit.log.{json.loads(path.read_bytes().splitlines()[0])['seq']}"))
    assert not path.exists()
    write_records(AuditLog(path, fake_mac, clock, max_bytes=700), 1, start=5)
    assert json.loads(path.read_bytes())["seq"] == 5
    assert verify(path, fake_mac_verify) == 5


# --- fail closed --------------------------------------------------------------------------------


def enospc(*args: object) -> int:
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("call", ["write", "fsync"])
def test_enospc_raises_audit_error_and_appends_nothing(
    path: Path, log: AuditLog, three: list[bytes], monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    head = head_path(path).read_bytes()
    with monkeypatch.context() as m:
        m.setattr(os, call, enospc)
        with pytest.raises(AuditError) as info:
            log.record("release", {"profile": "dev"})
    assert type(info.value) is AuditError
    assert "No space left on device" in info.value.message
    assert path.read_bytes() == b"".join(three)
    assert head_path(path).read_bytes() == head
    log.record("release", {"profile": "dev"})  # once space is back, the chain goes on
    assert verify(path, fake_mac_verify) == 4


def test_a_short_write_is_cut_back(
    path: Path, log: AuditLog, three: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write

    def short(fd: int, data: bytes) -> int:
        return real_write(fd, data[: len(data) // 2])

    with monkeypatch.context() as m:
        m.setattr(os, "write", short)
        with pytest.raises(AuditError, match="short write"):
            log.record("release", {"profile": "dev"})
    assert path.read_bytes() == b"".join(three)


def _head_seq(path: Path) -> int:
    seq: int = json.loads(head_path(path).read_bytes())["seq"]
    return seq


def test_a_failing_head_update_keeps_the_durable_record_and_catches_up(
    path: Path, log: AuditLog, three: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record is fsynced before its caller hears; a head that cannot be replaced (EIO,
    injected: no real device fails on demand) lags, as after a crash, and moves with the next
    batch."""
    real_replace = os.replace

    def failing(src: object, dst: object) -> None:
        if str(dst).endswith(".head"):
            raise OSError(errno.EIO, "Input/output error")
        real_replace(src, dst)  # type: ignore[arg-type]

    with monkeypatch.context() as m:
        m.setattr(os, "replace", failing)
        log.record("release", {"profile": "dev"})
    assert _head_seq(path) == 3
    assert verify(path, fake_mac_verify) == 4
    assert not path.with_name("audit.log.head.tmp").exists()
    log.record("release", {"profile": "dev"})
    assert _head_seq(path) == 5
    assert verify(path, fake_mac_verify) == 5


def test_a_caller_hears_before_the_head_moves(
    path: Path, log: AuditLog, three: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon request waits for its record's fsync, not for the head's two more (a thread
    caller, a CLI command about to exit, waits for the head too: the tests above)."""
    real_replace = os.replace
    returned = threading.Event()
    seen: list[bool] = []

    def held(src: object, dst: object) -> None:
        if str(dst).endswith(".head"):
            seen.append(returned.wait(10))
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", held)
    asyncio.run(log.record_async("release", {"profile": "dev"}, timeout=10))
    returned.set()
    deadline = time.monotonic() + 10
    while _head_seq(path) != 4:
        assert time.monotonic() < deadline, "the head never moved"
        time.sleep(0.01)
    assert seen == [True]


@pytest.mark.parametrize("make", ["directory", "missing_parent", "fifo", "symlink"])
def test_unwritable_path_raises_audit_error_at_once(
    tmp_path: Path, clock: FakeClock, make: str
) -> None:
    target = tmp_path / "audit.log"
    if make == "directory":
        target.mkdir()
    elif make == "missing_parent":
        target = tmp_path / "gone" / "audit.log"
    elif make == "fifo":
        os.mkfifo(target)  # no reader: a blocking open would hang
    else:
        (tmp_path / "elsewhere").write_bytes(b"")
        target.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(AuditError):
        AuditLog(target, fake_mac, clock).record("request", {"profile": "dev"})
    assert not head_path(target).exists()
    if make == "symlink":
        assert (tmp_path / "elsewhere").read_bytes() == b""


def test_a_failing_mac_appends_nothing(path: Path, clock: FakeClock) -> None:
    def sealed(data: bytes) -> bytes:
        raise OSError("the token is sealed, so audit records cannot be MACed")

    with pytest.raises(AuditError, match="sealed"):
        AuditLog(path, sealed, clock).record("request", {"profile": "dev"})
    assert not path.exists()


def test_a_torn_last_line_refuses_further_records(
    path: Path, log: AuditLog, three: list[bytes], clock: FakeClock
) -> None:
    path.write_bytes(b"".join(three)[:-10])
    with pytest.raises(AuditTampered, match="torn"):
        AuditLog(path, fake_mac, clock).record("request", {"profile": "dev"})


# --- the line parser ----------------------------------------------------------------------------


@settings(max_examples=400)
@given(st.binary(max_size=300))
def test_parse_line_raises_only_audit_tampered_on_bytes(data: bytes) -> None:
    try:
        obj = parse_line(data)
    except AuditTampered:
        return
    assert isinstance(obj["seq"], int)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3)
    ),
    max_leaves=8,
)
RECORDS = st.fixed_dictionaries(
    {},
    optional={
        "seq": JSON | st.integers(),
        "time": JSON,
        "event": JSON,
        "prev": JSON,
        "mac": JSON,
        "profile": JSON,
    },
)


@settings(max_examples=400)
@given(RECORDS, st.booleans(), st.integers(min_value=0, max_value=200), st.binary(max_size=3))
def test_parse_line_raises_only_audit_tampered_on_record_like_json(
    record: dict[str, object], canonical: bool, cut: int, junk: bytes
) -> None:
    text = json.dumps(record, sort_keys=canonical, separators=(",", ":") if canonical else None)
    line = text.encode()[:cut] + junk if junk else text.encode()
    try:
        obj = parse_line(line)
    except AuditTampered:
        return
    assert json.dumps(obj, sort_keys=True, separators=(",", ":")).encode() == line


@pytest.mark.parametrize(
    "line",
    [b"[" * 60_000, b'{"a":' * 20_000, b"{" + b"x" * 70_000 + b"}", b"\xff\xfe", b"1e99999"],
)
def test_parse_line_pathological_inputs(line: bytes) -> None:
    with pytest.raises(AuditTampered):
        parse_line(line)


def test_parse_line_rejects_a_boolean_seq_and_a_non_canonical_spelling(three: list[bytes]) -> None:
    obj = json.loads(three[0])
    assert parse_line(three[0].rstrip(b"\n"))["seq"] == 1
    with pytest.raises(AuditTampered, match="seq"):
        parse_line(json.dumps({**obj, "seq": True}, sort_keys=True, separators=(",", ":")).encode())
    with pytest.raises(AuditTampered, match="canonical"):
        parse_line(json.dumps(obj, sort_keys=True).encode())


# --- tail and follow ----------------------------------------------------------------------------


def test_tail_reads_across_rotated_files(path: Path, clock: FakeClock) -> None:
    write_records(AuditLog(path, fake_mac, clock, max_bytes=700), 7)
    assert tail(path, 0) == []
    assert [json.loads(x)["seq"] for x in tail(path, 4)] == [4, 5, 6, 7]
    assert [json.loads(x)["seq"] for x in tail(path, 50)] == list(range(1, 8))
    assert tail(path.with_name("none.log"), 5) == []


@pytest.fixture
def stopper() -> Iterator[threading.Event]:
    """Ends a follow loop that a bug would leave waiting (so the test fails, never hangs)."""
    stop = threading.Event()
    timer = threading.Timer(10, stop.set)
    timer.start()
    yield stop
    timer.cancel()
    stop.set()


def seqs(lines: Iterator[bytes], n: int) -> list[int]:
    return [json.loads(next(lines))["seq"] for _ in range(n)]


def test_follow_yields_backlog_then_new_records_across_rotation(
    path: Path, clock: FakeClock, stopper: threading.Event
) -> None:
    log = AuditLog(path, fake_mac, clock, max_bytes=700)
    write_records(log, 3)
    lines = follow(path, backlog=2, poll=0.01, stop=stopper)
    assert seqs(lines, 2) == [2, 3]
    write_records(log, 1, start=4)
    assert seqs(lines, 1) == [4]
    before = len(rotated_files(path))
    write_records(log, 6, start=5)
    assert len(rotated_files(path)) >= before + 2  # two rotations between two reads
    assert seqs(lines, 6) == [5, 6, 7, 8, 9, 10]
    stopper.set()
    assert list(lines) == []


def test_follow_waits_for_the_log_to_appear(
    path: Path, log: AuditLog, stopper: threading.Event
) -> None:
    lines = follow(path, backlog=5, poll=0.01, stop=stopper)
    threading.Timer(0.05, write_records, (log, 2)).start()
    assert seqs(lines, 2) == [1, 2]


# --- the command's plain output -----------------------------------------------------------------


def run_tail(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *argv: str) -> None:
    monkeypatch.delenv("VAULTD_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("VAULTD_DATA_DIR", str(tmp_path))
    parser = argparse.ArgumentParser()
    audit_cmd.add_parser(parser.add_subparsers())
    ns = parser.parse_args(["audit", "tail", *argv])
    assert ns.func(ns) == 0


def test_tail_command_prints_one_line_per_record(
    path: Path,
    log: AuditLog,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    log.record("request", {"profile": "dev", "client": {**CLIENT, "executable": "/tmp/\x1b[31mx"}})
    log.record("approval_failed", {"profile": "dev", "outcome": "DENIED"})
    run_tail(monkeypatch, tmp_path, "-n", "5")
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "2026-01-01T00:00:00.000000Z  request  dev  -  pid 4242 /tmp/\\x1b[31mx",
        "2026-01-01T00:00:00.000000Z  approval_failed  dev  DENIED  -",
    ]
    run_tail(monkeypatch, tmp_path, "-n", "1", "--json")
    assert capsys.readouterr().out == path.read_text().splitlines(keepends=True)[-1]


def test_tail_command_marks_an_unreadable_record(
    path: Path,
    three: list[bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path.write_bytes(three[0] + b"garbage\n" + three[2])
    run_tail(monkeypatch, tmp_path, "-n", "3")
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("?  unreadable record (record is not JSON)")
    assert out[0].split()[1:3] == ["request", "p1"]


# --- the writer checks its head anchor ----------------------------------------------------------


@pytest.mark.parametrize("damage", ["delete_log", "cut_last", "forge_head"])
def test_a_writer_refuses_a_log_behind_its_head_anchor(
    path: Path, three: list[bytes], clock: FakeClock, damage: str
) -> None:
    """A deleted or cut log must not silently restart the chain at seq 1 (fail closed)."""
    if damage == "delete_log":
        path.unlink()
    elif damage == "cut_last":
        path.write_bytes(three[0] + three[1])
    else:
        head = json.loads(head_path(path).read_bytes())
        head_path(path).write_text(json.dumps({**head, "seq": 9}))
    before = path.read_bytes() if path.exists() else None
    with pytest.raises(AuditTampered, match="head anchor"):
        AuditLog(path, fake_mac, clock).record("request", {"profile": "dev"})
    assert (path.read_bytes() if path.exists() else None) == before


# --- group commit -------------------------------------------------------------------------------


class HeldWriter:
    """Wraps the log's append: the first write waits for :attr:`release`; every write's record
    count is kept, and with :attr:`fail_later` every write after the first raises ENOSPC."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.writes: list[int] = []
        self.heads = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail_later = False
        real_append, real_replace = audit_module._append, audit_module._replace

        def append(path: Path, data: bytes) -> None:
            self.writes.append(data.count(b"\n"))
            if len(self.writes) == 1:
                self.entered.set()
                assert self.release.wait(10)
            elif self.fail_later:
                raise OSError(errno.ENOSPC, "No space left on device")
            real_append(path, data)

        def replace(path: Path, data: bytes) -> None:
            self.heads += 1
            real_replace(path, data)

        monkeypatch.setattr(audit_module, "_append", append)
        monkeypatch.setattr(audit_module, "_replace", replace)


def wait_queued(log: AuditLog, count: int) -> None:
    """Wait until ``count`` records wait behind the held batch (white box: the queue)."""
    for _ in range(2000):
        if len(log._queue) >= count:
            return
        time.sleep(0.005)
    raise AssertionError(f"{count} records were never queued")


def start_records(
    log: AuditLog, fields: list[dict[str, object]]
) -> tuple[list[threading.Thread], dict[int, BaseException | None]]:
    """Call ``log.record`` from one thread per entry; outcomes land in the dict by index."""
    outcomes: dict[int, BaseException | None] = {}

    def one(i: int) -> None:
        try:
            log.record("request", fields[i])
        except Exception as exc:  # the outcome is what the test checks
            outcomes[i] = exc
        else:
            outcomes[i] = None

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(fields))]
    for t in threads:
        t.start()
    return threads, outcomes


def hold_first(log: AuditLog, held: HeldWriter) -> threading.Thread:
    thread = threading.Thread(target=log.record, args=("start", {"outcome": "first"}))
    thread.start()
    assert held.entered.wait(10)
    return thread


def test_concurrent_records_share_one_write_and_one_head_update(
    path: Path, log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = HeldWriter(monkeypatch)
    first = hold_first(log, held)
    threads, outcomes = start_records(log, [{"n": i} for i in range(20)])
    wait_queued(log, 20)
    held.release.set()
    for t in [first, *threads]:
        t.join(10)
    assert outcomes == {i: None for i in range(20)}
    assert held.writes == [1, 20]  # one write (and fsync) for the 20 queued records
    assert held.heads == 2
    assert verify(path, fake_mac_verify) == 21
    records = [json.loads(line) for line in path.read_bytes().splitlines()]
    assert sorted(r["n"] for r in records[1:]) == list(range(20))
    head = json.loads(head_path(path).read_bytes())
    assert head["seq"] == 21


def test_a_failed_batch_fails_each_of_its_callers_and_writes_none_of_it(
    path: Path, log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = HeldWriter(monkeypatch)
    first = hold_first(log, held)
    threads, outcomes = start_records(log, [{"n": i} for i in range(5)])
    wait_queued(log, 5)
    held.fail_later = True
    held.release.set()
    for t in [first, *threads]:
        t.join(10)
    errors = list(outcomes.values())
    assert len(errors) == 5 and all(type(e) is AuditError for e in errors)
    assert all("No space left on device" in e.message for e in errors if isinstance(e, AuditError))
    assert len({id(e) for e in errors}) == 5  # each caller raises its own error
    assert verify(path, fake_mac_verify) == 1
    held.fail_later = False
    log.record("release", {"profile": "dev"})  # the chain goes on from the last durable record
    assert verify(path, fake_mac_verify) == 2


def test_an_oversize_record_fails_alone_in_its_batch(
    path: Path, log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = HeldWriter(monkeypatch)
    first = hold_first(log, held)
    fields: list[dict[str, object]] = [{"n": 0}, {"n": 1, "blob": "x" * 70_000}, {"n": 2}]
    threads, outcomes = start_records(log, fields)
    wait_queued(log, 3)
    held.release.set()
    for t in [first, *threads]:
        t.join(10)
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], AuditError)
    assert "longer than 64 KiB" in outcomes[1].message
    assert verify(path, fake_mac_verify) == 3


def test_rotation_inside_one_batch_keeps_the_chain(
    path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = HeldWriter(monkeypatch)
    log = AuditLog(path, fake_mac, clock, max_bytes=700)
    first = hold_first(log, held)
    threads, outcomes = start_records(log, [{"n": i} for i in range(9)])
    wait_queued(log, 9)
    held.release.set()
    for t in [first, *threads]:
        t.join(10)
    assert set(outcomes.values()) == {None}
    assert len(held.writes) > 2 and sum(held.writes) == 10  # one write per file reached
    assert len(rotated_files(path)) >= 2
    assert verify(path, fake_mac_verify) == 10


def test_one_token_mac_per_batch_covers_every_record_of_it(
    path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    macs: list[bytes] = []

    def counting_mac(data: bytes) -> bytes:
        macs.append(data)
        return fake_mac(data)

    log = AuditLog(path, counting_mac, clock)
    held = HeldWriter(monkeypatch)
    first = hold_first(log, held)
    threads, outcomes = start_records(log, [{"n": i} for i in range(20)])
    wait_queued(log, 20)
    macs.clear()
    held.release.set()
    for t in [first, *threads]:
        t.join(10)
    assert set(outcomes.values()) == {None}
    # the held first batch's head anchor, then this batch's last record and head anchor only
    assert len(macs) == 3 and b'"seq":21' in macs[1] and b'"seq":21' in macs[2]
    records = [json.loads(line) for line in path.read_bytes().splitlines()]
    assert ["mac" in r for r in records] == [True] + [False] * 19 + [True]
    assert verify(path, fake_mac_verify) == 21


def test_an_edit_of_a_record_without_its_own_mac_is_caught(
    path: Path, log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = HeldWriter(monkeypatch)
    first = hold_first(log, held)
    threads, _ = start_records(log, [{"n": f"v{i}"} for i in range(5)])
    wait_queued(log, 5)
    held.release.set()
    for t in [first, *threads]:
        t.join(10)
    lines = path.read_bytes().splitlines(keepends=True)
    assert b'"mac"' not in lines[2]
    path.write_bytes(b"".join([*lines[:2], lines[2].replace(b'"v', b'"w'), *lines[3:]]))
    err = bad(path)
    assert err.line == 4 and "record 3 or this one was changed" in err.message


def test_records_appended_without_the_token_are_refused(
    path: Path, three: list[bytes], clock: FakeClock
) -> None:
    """Anyone can extend the hash chain; only the token can MAC it, so an unMACed end is
    refused by verify and by a writer (which would otherwise cover it with its next MAC)."""
    prev = hashlib.sha256(three[-1].rstrip(b"\n")).hexdigest()
    forged = {"event": "release", "prev": prev, "seq": 4, "time": "2026-01-01T00:00:00.000000Z"}
    path.write_bytes(
        b"".join(three) + json.dumps(forged, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    )
    before = path.read_bytes()
    err = bad(path)
    assert (err.line, err.seq) == (4, 4) and "no MAC covers" in err.message
    with pytest.raises(AuditTampered, match="carries no valid MAC"):
        AuditLog(path, fake_mac, clock).record("release", {"profile": "dev"})
    assert path.read_bytes() == before


def test_a_batch_across_a_rotation_ends_every_file_with_a_mac(
    path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = HeldWriter(monkeypatch)
    log = AuditLog(path, fake_mac, clock, max_bytes=80_000)
    first = hold_first(log, held)
    threads, outcomes = start_records(log, [{"n": i, "blob": "x" * 3000} for i in range(60)])
    wait_queued(log, 60)
    held.release.set()
    for t in [first, *threads]:
        t.join(10)
    assert set(outcomes.values()) == {None}
    files = chain_files(path)
    assert len(files) >= 3
    for file in files:
        records = [json.loads(line) for line in file.read_bytes().splitlines()]
        assert "mac" in records[-1], file
    assert (
        sum("mac" not in json.loads(line) for f in files for line in f.read_bytes().splitlines())
        >= 5
    )
    assert verify(path, fake_mac_verify) == 61


async def test_record_async_fails_closed_after_its_timeout(
    path: Path, log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = HeldWriter(monkeypatch)
    first = asyncio.create_task(log.record_async("start", {"outcome": "first"}, timeout=10))
    assert await asyncio.to_thread(held.entered.wait, 10)
    patient = asyncio.create_task(log.record_async("request", {"n": 1}, timeout=10))
    with pytest.raises(AuditError, match=r"within 0\.2 s; nothing was released"):
        await log.record_async("release", {"n": 2}, timeout=0.2)
    assert not patient.done()  # a longer deadline is not cut short by a shorter one
    held.release.set()
    await asyncio.gather(first, patient)
    assert verify(path, fake_mac_verify) == 3  # the late record was still written


async def test_record_async_batches_and_resolves_every_waiter(
    path: Path, log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = HeldWriter(monkeypatch)
    first = asyncio.create_task(log.record_async("start", {"outcome": "first"}, timeout=10))
    assert await asyncio.to_thread(held.entered.wait, 10)
    rest = [
        asyncio.create_task(log.record_async("request", {"n": i}, timeout=10)) for i in range(10)
    ]
    await asyncio.sleep(0)  # every task runs up to its wait: all ten are queued now
    assert len(log._queue) == 10
    rest[3].cancel()  # a caller that stops waiting does not withdraw its record
    held.release.set()
    results = await asyncio.gather(first, *rest, return_exceptions=True)
    assert [type(r) for r in results].count(asyncio.CancelledError) == 1
    assert results.count(None) == 10
    assert held.writes == [1, 10]
    assert verify(path, fake_mac_verify) == 11


async def test_record_async_raises_audit_error_when_the_batch_fails(
    path: Path, clock: FakeClock
) -> None:
    def sealed(data: bytes) -> bytes:
        raise OSError("the token is sealed, so audit records cannot be MACed")

    log = AuditLog(path, sealed, clock)
    results = await asyncio.gather(
        *(log.record_async("request", {"n": i}, timeout=10) for i in range(3)),
        return_exceptions=True,
    )
    assert all(isinstance(r, AuditError) and "sealed" in r.message for r in results)
    assert not path.exists()


def test_the_writer_thread_ends_when_idle_and_starts_again(
    path: Path, log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_module, "IDLE_SECONDS", 0.01)
    log.record("request", {"n": 1})
    writer = log._writer
    assert writer is not None
    writer.join(10)
    assert log._writer is None
    log.record("request", {"n": 2})
    assert verify(path, fake_mac_verify) == 2


def test_many_threads_and_coroutines_at_once_keep_one_unbroken_chain(
    path: Path, log: AuditLog
) -> None:
    async def coroutines() -> None:
        await asyncio.gather(
            *(log.record_async("release", {"a": i}, timeout=10) for i in range(40))
        )

    threads = [threading.Thread(target=write_records, args=(log, 10, 100 * k)) for k in range(6)]
    for t in threads:
        t.start()
    asyncio.run(coroutines())
    for t in threads:
        t.join(10)
    assert verify(path, fake_mac_verify) == 100


def test_tag_text_names_a_signature_scheme_and_keeps_hmac_hex() -> None:
    from vaultd.store.audit import tag_bytes, tag_text

    hmac_tag = b"ecdsa-p256:" + b"\x00" * 21  # 32 bytes: always an HMAC, always plain hex
    assert tag_text(hmac_tag) == hmac_tag.hex()
    assert tag_bytes(hmac_tag.hex()) == hmac_tag
    signature = b"ecdsa-p256:" + bytes(range(64))
    assert tag_text(signature) == "ecdsa-p256:" + bytes(range(64)).hex()
    assert tag_bytes(tag_text(signature)) == signature
    for bad in ("", "AB" * 32, "ecdsa-p256:", "Ecdsa:00", "x:y:00", "ecdsa-p256:0G"):
        with pytest.raises(ValueError):
            tag_bytes(bad)


# --- two writers: the daemon and a CLI command on one chain -------------------------------


def test_two_writers_interleave_into_one_chain(path: Path) -> None:
    """A CLI command's AuditLog and the daemon's append to the same chain: each re-reads the
    tail another writer moved (inode or size changed), so `vaultd audit verify` still passes,
    across rotations too."""
    daemon = AuditLog(path, fake_mac, FakeClock(), max_bytes=2048)
    cli = AuditLog(path, fake_mac, FakeClock(), max_bytes=2048)
    for i in range(1, 31):
        (daemon if i % 3 else cli).record("request", {"profile": f"p{i}", "client": CLIENT})
    assert verify(path, fake_mac_verify) == 30
    assert rotated_files(path)  # the rotation by one writer did not fool the other


def test_two_writers_at_once_never_fork_the_chain(path: Path) -> None:
    """Concurrent batches from two writers serialise on ``audit.log.lock`` (flock)."""
    logs = [AuditLog(path, fake_mac, FakeClock()) for _ in range(2)]
    threads = [
        threading.Thread(target=write_records, args=(log, 40, 1 + 40 * n))
        for n, log in enumerate(logs)
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert verify(path, fake_mac_verify) == 160
    assert oct(os.stat(path.with_name("audit.log.lock")).st_mode & 0o777) == "0o600"


def _uncovered(line: bytes) -> bytes:
    """``line`` without its MAC, as the first lines of a batch are written."""
    obj = json.loads(line)
    del obj["mac"]
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def test_a_batch_a_crash_cut_short_is_not_part_of_the_chain_and_is_cut_before_the_next(
    path: Path, log: AuditLog, clock: FakeClock
) -> None:
    """SIGKILL mid-append: the batch was never acknowledged (the head had not moved), so
    verify counts the records before it, and the next writer cuts the remains and chains on."""
    write_records(log, 3)
    committed, head = path.read_bytes(), head_path(path).read_bytes()
    write_records(log, 1, start=4)
    fourth = path.read_bytes()[len(committed) :]
    leftovers = {
        "torn line": fourth[: len(fourth) // 2],
        "uncovered and torn": _uncovered(fourth) + fourth[:20],
    }
    for what, left in leftovers.items():
        path.write_bytes(committed + left)
        head_path(path).write_bytes(head)
        assert verify(path, fake_mac_verify) == 3, what
        AuditLog(path, fake_mac, clock).record("request", {"profile": "after"})
        assert verify(path, fake_mac_verify) == 4, what
        assert path.read_bytes().startswith(committed), what
