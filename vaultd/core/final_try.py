"""The typed confirmation that spends a token's final PIN try (docs/threat-model.md T9).

At a token's final PIN try the daemon answers ``unlock`` with ``HSM_PIN_FINAL_TRY`` and a
one-time challenge: :data:`WORD_COUNT` random words.  Only an ``unlock`` whose
``final_try_answer`` repeats them within :data:`TTL` seconds may log in; any answer, right or
wrong, ends the challenge.  No request field says "confirmed", so a script that sets a flag or
replays an old answer cannot spend the try.  A program that reads the reply and echoes the words
can: that is the same-uid attacker of SECURITY.md, who can also log in to the token directly.
The words come from :func:`secrets.choice` (``pick``, injectable for tests), not the token's
generator: the vault is sealed when they are needed.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Sequence
from typing import Final

from vaultd.core.ports import Clock

TTL: Final = 120.0
WORD_COUNT: Final = 3
WORDS: Final = (
    "amber", "anchor", "apple", "arrow", "badge", "basket", "beacon", "birch", "bridge",
    "candle", "canyon", "cedar", "cherry", "cloud", "copper", "coral", "desert", "dolphin",
    "ember", "falcon", "forest", "garden", "glacier", "harbor", "hazel", "island", "jacket",
    "kettle", "lantern", "lemon", "maple", "meadow", "mirror", "nectar", "orchid", "otter",
    "pebble", "pepper", "piano", "planet", "quartz", "rabbit", "ribbon", "river", "saddle",
    "salmon", "shadow", "silver", "spruce", "tiger", "timber", "tomato", "tunnel", "velvet",
    "violet", "walnut", "willow", "window", "winter", "yellow", "zebra", "zephyr", "pillow",
    "marble",
)  # fmt: skip


class FinalTryGate:
    """At most one live challenge; :meth:`answer` consumes it."""

    def __init__(
        self, clock: Clock, *, pick: Callable[[Sequence[str]], str] = secrets.choice
    ) -> None:
        self._clock = clock
        self._pick = pick
        self._words: str | None = None
        self._expires = 0.0

    def issue(self) -> str:
        """A fresh challenge (replacing any earlier one): words separated by single spaces."""
        self._words = " ".join(self._pick(WORDS) for _ in range(WORD_COUNT))
        self._expires = self._clock.monotonic() + TTL
        return self._words

    def answer(self, text: str) -> bool:
        """True when ``text`` repeats the live challenge in time; the challenge ends either way."""
        words, self._words = self._words, None
        if words is None or self._clock.monotonic() > self._expires:
            return False
        return hmac.compare_digest(" ".join(text.lower().split()).encode(), words.encode())
