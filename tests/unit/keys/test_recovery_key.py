"""The offline recovery key: words round trip, mistyped words refused, seal/open on the host
(issue 14 item 5).  Pure host cryptography: no token involved."""

from __future__ import annotations

import pytest

from vaultd.errors import ConfigError, RecordCorrupt
from vaultd.keys import recovery


def test_words_round_trip_to_the_same_key() -> None:
    key = recovery.generate()
    words = key.to_words()
    groups = words.split("-")
    assert len(groups) == 11 and all(len(g) == 5 for g in groups[:-1])
    again = recovery.from_words(f"  {words.lower().replace('-', ' ')}\n")
    assert again.id == key.id and again.public_point == key.public_point
    assert key.id.startswith("recovery-p256:")


@pytest.mark.parametrize(
    ("mangle", "match"),
    [
        (lambda w: w[:-6], "characters"),
        (lambda w: w + "A", "characters"),
        (lambda w: w.replace(w[0], "1" if w[0] != "1" else "8", 1), "outside A-Z"),
        (lambda w: ("B" if w[0] != "B" else "C") + w[1:], "checksum"),
        (lambda w: "", "characters"),
    ],
)
def test_mistyped_words_are_one_line_errors_that_never_echo(mangle: object, match: str) -> None:
    words = recovery.generate().to_words()
    bad = mangle(words)  # type: ignore[operator]
    with pytest.raises(ConfigError, match=match) as info:
        recovery.from_words(bad)
    message = str(info.value)
    assert "\n" not in message and words[:11] not in message


def test_wrap_and_unwrap_bind_the_aad() -> None:
    key = recovery.generate()
    iv = b"\x01" * 12
    body = key.wrap(iv, b"data key", b"aad")
    assert key.unwrap(iv, body, b"aad") == b"data key"
    with pytest.raises(RecordCorrupt):
        key.unwrap(iv, body, b"other aad")
    with pytest.raises(RecordCorrupt):
        recovery.generate().unwrap(iv, body, b"aad")  # another recovery key
