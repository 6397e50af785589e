"""OtpLedger: single-use steps and codes, rate limits, lockout, persistence."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vaultd.core.otp_ledger import OtpLedger, step_for
from vaultd.errors import CodeReused, MfaLocked, RateLimited, StoreUnreadable

SERIAL = "arn:aws:iam::123456789012:mfa/dev"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def roundtrip(ledger: OtpLedger) -> OtpLedger:
    return OtpLedger.from_dict(json.loads(json.dumps(ledger.to_dict())))


def test_step_for() -> None:
    assert step_for(datetime(1970, 1, 1, 0, 0, 59, tzinfo=UTC)) == 1
    assert step_for(datetime(1970, 1, 1, 0, 1, tzinfo=UTC)) == 2
    assert step_for(datetime(1970, 1, 1, 0, 1, tzinfo=UTC), period=60) == 1
    with pytest.raises(ValueError, match="timezone"):
        step_for(datetime(2026, 1, 1))  # naive on purpose


def test_generated_step_reuse_refused_and_survives_restart() -> None:
    ledger = OtpLedger()
    step = step_for(T0)
    ledger.check_and_mark(SERIAL, step)
    with pytest.raises(CodeReused, match="wait for the next code"):
        ledger.check_and_mark(SERIAL, step)
    ledger.check_and_mark("other-serial-1", step)  # per serial
    restored = roundtrip(ledger)
    with pytest.raises(CodeReused):
        restored.check_and_mark(SERIAL, step)
    restored.check_and_mark(SERIAL, step + 1)


def test_next_unused_step() -> None:
    ledger = OtpLedger()
    assert ledger.next_unused_step(SERIAL, 100) == 100
    ledger.check_and_mark(SERIAL, 100)
    assert ledger.next_unused_step(SERIAL, 100) == 101
    ledger.check_and_mark(SERIAL, 101)
    assert ledger.next_unused_step(SERIAL, 100) is None


def test_typed_code_reuse_refused_across_steps_and_restart() -> None:
    ledger = OtpLedger()
    ledger.check_and_mark_typed(SERIAL, "480913", 100)
    ledger.check_and_mark_typed(SERIAL, "480914", 100)  # a corrected typo in the same step
    restored = roundtrip(ledger)
    with pytest.raises(CodeReused):
        restored.check_and_mark_typed(SERIAL, "480913", 103)  # same code 90 s later
    assert "48091" not in json.dumps(restored.to_dict())
    assert restored.next_unused_step(SERIAL, 100) == 101  # typed codes block generation too


def test_generated_code_blocks_its_typed_copy() -> None:
    ledger = OtpLedger()
    ledger.check_and_mark(SERIAL, 100, code="111222")
    with pytest.raises(CodeReused):
        ledger.check_and_mark_typed(SERIAL, "111222", 101)
    with pytest.raises(CodeReused):
        ledger.check_and_mark(SERIAL, 101, code="111222")


def test_old_steps_are_pruned_and_refused() -> None:
    ledger = OtpLedger()
    ledger.check_and_mark(SERIAL, 100, code="111111")
    ledger.check_and_mark(SERIAL, 120)
    state = ledger.to_dict()["serials"]
    assert isinstance(state, dict)
    assert state[SERIAL]["steps"] == [120] and state[SERIAL]["codes"] == {}
    assert ledger.is_used(SERIAL, 100)  # older than the window: refused, never re-sent
    with pytest.raises(CodeReused):
        ledger.check_and_mark(SERIAL, 100)
    with pytest.raises(CodeReused):
        ledger.check_and_mark_typed(SERIAL, "222222", 100)
    ledger.check_and_mark(SERIAL, 110)


def test_clock_stepped_forward_and_back_keeps_recent_steps_refused_only() -> None:
    ledger = OtpLedger()
    ledger.check_and_mark(SERIAL, 100)
    ledger.check_and_mark(SERIAL, 1000)  # a code generated while the clock ran 7.5 h ahead
    assert ledger.is_used(SERIAL, 100)  # pruned, yet still refused
    assert not ledger.is_used(SERIAL, 101)
    ledger.check_and_mark(SERIAL, 101)  # the clock is fixed: MFA keeps working
    assert roundtrip(ledger).is_used(SERIAL, 99)


def test_sixth_failure_within_window_is_rate_limited() -> None:
    ledger = OtpLedger()
    for i in range(5):
        ledger.check_allowed(SERIAL, at(i * 10))
        ledger.record_failure(SERIAL, at(i * 10))
    with pytest.raises(RateLimited) as info:
        ledger.check_allowed(SERIAL, at(50))
    assert info.value.code == "RATE_LIMITED"
    assert info.value.retry_after == pytest.approx(250)
    with pytest.raises(RateLimited):
        roundtrip(ledger).check_allowed(SERIAL, at(299))
    ledger.check_allowed("another-serial", at(50))
    ledger.check_allowed(SERIAL, at(300))


def test_delays_grow_after_the_first_five() -> None:
    ledger = OtpLedger()
    now = 0.0
    retries: list[float] = []
    for _ in range(12):
        while True:
            try:
                ledger.check_allowed(SERIAL, at(now))
                break
            except RateLimited as err:
                assert err.retry_after > 0
                retries.append(err.retry_after)
                now += err.retry_after
        ledger.record_failure(SERIAL, at(now))
    # 5 free tries, then the 5-per-5-min window, then doubling delays after each failure.
    assert retries == pytest.approx([300, 60, 120, 240, 480, 960, 1920])
    assert now == pytest.approx(4080)


def test_twenty_consecutive_failures_lock_until_unlock() -> None:
    ledger = OtpLedger()
    for i in range(20):
        ledger.record_failure(SERIAL, at(i))
    assert ledger.is_locked(SERIAL)
    restored = roundtrip(ledger)
    for ledger_ in (ledger, restored):
        with pytest.raises(MfaLocked, match="unlock it in `vaultd tui` with user verification"):
            ledger_.check_allowed(SERIAL, at(10 * 86400))
    restored.record_success(SERIAL)
    restored.check_allowed(SERIAL, at(21))
    ledger.unlock(SERIAL)
    assert not ledger.is_locked(SERIAL)
    ledger.check_allowed(SERIAL, at(21))
    assert ledger.to_dict() == {"version": 1, "serials": {}}


def test_success_resets_counters() -> None:
    ledger = OtpLedger()
    for i in range(19):
        ledger.record_failure(SERIAL, at(i))
    ledger.record_success(SERIAL)
    ledger.record_failure(SERIAL, at(100))
    assert not ledger.is_locked(SERIAL)
    ledger.check_allowed(SERIAL, at(100))


def test_wall_clock_step_back_does_not_lock_forever() -> None:
    ledger = OtpLedger()
    for i in range(5):
        ledger.record_failure(SERIAL, at(86400 + i))
    with pytest.raises(RateLimited) as info:
        ledger.check_allowed(SERIAL, at(0))  # the clock stepped back a day
    assert info.value.retry_after <= 300
    ledger.check_allowed(SERIAL, at(300))


@pytest.mark.parametrize(
    "bad",
    [
        None,
        [],
        "ledger",
        {},
        {"version": 2, "serials": {}},
        {"version": True, "serials": {}},
        {"version": 1, "serials": []},
        {"version": 1, "serials": {}, "extra": 1},
        {"version": 1, "serials": {"": {}}},
        {"version": 1, "serials": {SERIAL: {"steps": []}}},
        {
            "version": 1,
            "serials": {
                SERIAL: {
                    "steps": [1.5],
                    "codes": {},
                    "failures": [],
                    "consecutive": 0,
                    "last_failure": None,
                    "floor": None,
                }
            },
        },
        {
            "version": 1,
            "serials": {
                SERIAL: {
                    "steps": [],
                    "codes": {"zz": 1},
                    "failures": [],
                    "consecutive": 0,
                    "last_failure": None,
                    "floor": None,
                }
            },
        },
        {
            "version": 1,
            "serials": {
                SERIAL: {
                    "steps": [],
                    "codes": {},
                    "failures": [float("nan")],
                    "consecutive": -1,
                    "last_failure": None,
                    "floor": None,
                }
            },
        },
        {
            "version": 1,
            "serials": {
                SERIAL: {
                    "steps": [],
                    "codes": {},
                    "failures": [1.0] * 6,
                    "consecutive": 6,
                    "last_failure": 1.0,
                    "floor": None,
                }
            },
        },
    ],
)
def test_from_dict_refuses_garbage(bad: object) -> None:
    with pytest.raises(StoreUnreadable):
        OtpLedger.from_dict(bad)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
serial_entry = st.fixed_dictionaries(
    {
        "steps": st.lists(json_values, max_size=3),
        "codes": st.dictionaries(st.text(max_size=64), json_values, max_size=2),
        "failures": st.lists(json_values, max_size=6),
        "consecutive": json_values,
        "last_failure": json_values,
        "floor": st.none() | st.integers() | json_values,
    }
)
ledger_shaped = st.fixed_dictionaries(
    {
        "version": st.sampled_from([1, 1.0, True, "1", 0]),
        "serials": st.dictionaries(st.text(max_size=4), serial_entry | json_values, max_size=3),
    }
)


@given(json_values | ledger_shaped)
def test_from_dict_on_arbitrary_json_raises_only_store_unreadable(data: object) -> None:
    try:
        ledger = OtpLedger.from_dict(data)
    except StoreUnreadable:
        return
    assert OtpLedger.from_dict(ledger.to_dict()).to_dict() == ledger.to_dict()


operations = st.lists(
    st.tuples(
        st.sampled_from(["mark", "typed", "fail", "ok"]),
        st.sampled_from(["a-serial-1", "b-serial-2"]),
        st.integers(0, 40),
        st.from_regex(r"[0-9]{6}", fullmatch=True),
    ),
    max_size=30,
)


@given(operations)
def test_roundtrip_preserves_every_refusal(ops: list[tuple[str, str, int, str]]) -> None:
    ledger = OtpLedger()
    for op, serial, n, code in ops:
        try:
            if op == "mark":
                ledger.check_and_mark(serial, n, code=code)
            elif op == "typed":
                ledger.check_and_mark_typed(serial, code, n)
            elif op == "fail":
                ledger.record_failure(serial, at(n))
            else:
                ledger.record_success(serial)
        except CodeReused:
            pass
    restored = roundtrip(ledger)
    assert restored.to_dict() == ledger.to_dict()
    for serial in ("a-serial-1", "b-serial-2"):
        for step in range(-1, 42):
            assert restored.is_used(serial, step) == ledger.is_used(serial, step)
        assert restored.is_locked(serial) == ledger.is_locked(serial)
