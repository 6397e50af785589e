"""FinalTryGate: the one-time challenge that spends a token's final PIN try (T9), on FakeClock."""

from __future__ import annotations

import pytest

from vaultd.core.final_try import TTL, WORD_COUNT, WORDS, FinalTryGate
from vaultd.testing.clock import FakeClock


def test_the_challenge_is_random_words_answered_once() -> None:
    gate = FinalTryGate(FakeClock())
    words = gate.issue()
    assert len(words.split()) == WORD_COUNT and set(words.split()) <= set(WORDS)
    assert gate.answer(words)
    assert not gate.answer(words)  # one use: a replayed answer is refused


@pytest.mark.parametrize("typed", ["  Amber   AMBER amber ", "amber amber amber"])
def test_case_and_spacing_do_not_matter(typed: str) -> None:
    gate = FinalTryGate(FakeClock(), pick=lambda words: "amber")
    gate.issue()
    assert gate.answer(typed)


@pytest.mark.parametrize("typed", ["", "amber amber", "amber amber amber amber", "final try"])
def test_a_wrong_answer_ends_the_challenge(typed: str) -> None:
    gate = FinalTryGate(FakeClock(), pick=lambda words: "amber")
    gate.issue()
    assert not gate.answer(typed)
    assert not gate.answer("amber amber amber")  # no second guess at the same words


def test_no_challenge_no_confirmation() -> None:
    assert not FinalTryGate(FakeClock()).answer("amber amber amber")


def test_the_challenge_expires() -> None:
    clock = FakeClock()
    gate = FinalTryGate(clock)
    words = gate.issue()
    clock.advance(TTL + 1)
    assert not gate.answer(words)


def test_a_new_challenge_replaces_the_old() -> None:
    picks = iter(["amber"] * WORD_COUNT + ["zebra"] * WORD_COUNT)
    gate = FinalTryGate(FakeClock(), pick=lambda words: next(picks))
    old = gate.issue()
    new = gate.issue()
    assert old != new
    assert not gate.answer(old)
