# ruff: noqa: S101 - pytest suites: plain asserts give pytest's failure introspection
"""Contract suites every plugin must pass: pytest mixins, one per plugin Protocol.

Subclass one in a ``Test*`` class and implement ``make_plugin()``; pytest then runs the
inherited tests against your plugin::

    class TestMyNotifier(NotifierContract):
        def make_plugin(self) -> Notifier:
            return MyNotifier(...)

Hooks with a default may be overridden (for example ``delivered`` to let the suite check
what a notifier actually sent). These suites are for tests only; production code never
imports this module.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import pytest

from vaultd.plugin.api import (
    CODE_RE,
    CodeSource,
    KeyStore,
    KeyStoreBacking,
    KeyStoreConfig,
    KeyWrapper,
    MfaError,
    Notifier,
    NotifyEvent,
    RecordCorrupt,
    Severity,
)

_HOSTILE_TEXT = "--help\n<b>&amp;</b> ' \" $(id) `id` \u202e\U0001f511 " + "x" * 900


class NotifierContract(abc.ABC):
    """What every :class:`~vaultd.plugin.api.Notifier` does."""

    @abc.abstractmethod
    def make_plugin(self) -> Notifier:
        """A notifier that is available and delivers somewhere observable if possible."""

    def delivered(self, plugin: Notifier, count: int) -> Sequence[str]:
        """Text of the first ``count`` deliveries, waiting as needed; skip if not observable."""
        pytest.skip("this notifier's deliveries are not observable")

    def test_is_a_notifier_and_available(self) -> None:
        plugin = self.make_plugin()
        assert isinstance(plugin, Notifier)
        assert plugin.is_available() is True

    def test_every_severity_is_delivered(self) -> None:
        plugin = self.make_plugin()
        for severity in Severity:
            plugin.notify(NotifyEvent("contract.check", "dev", severity, f"sev-{severity}"))
        texts = self.delivered(plugin, len(Severity))
        for severity in Severity:
            assert any(f"sev-{severity}" in text for text in texts), severity

    def test_hostile_text_is_delivered_verbatim_and_not_raised_on(self) -> None:
        plugin = self.make_plugin()
        plugin.notify(NotifyEvent("contract.hostile", "", Severity.INFO, _HOSTILE_TEXT))
        (text,) = self.delivered(plugin, 1)
        assert _HOSTILE_TEXT in text

    def test_event_and_profile_reach_the_reader(self) -> None:
        plugin = self.make_plugin()
        plugin.notify(NotifyEvent("approval.opened", "prod-admin", Severity.WARNING, "m"))
        (text,) = self.delivered(plugin, 1)
        assert "approval.opened" in text
        assert "prod-admin" in text


class CodeSourceContract(abc.ABC):
    """What every :class:`~vaultd.plugin.api.CodeSource` does: what the daemon calls."""

    serial: str = "arn:aws:iam::123456789012:mfa/contract"
    """A serial ``make_plugin()``'s source can give codes for."""

    unknown: str = "arn:aws:iam::123456789012:mfa/not-enrolled-here"
    step_start: int = 1_234_567_890
    """A Unix time at the start of a 30 s step."""

    @abc.abstractmethod
    def make_plugin(self) -> CodeSource:
        """A source that is available and knows :attr:`serial`."""

    def test_is_a_code_source_and_available(self) -> None:
        plugin = self.make_plugin()
        assert isinstance(plugin, CodeSource)
        assert plugin.is_available() is True

    def test_code_is_six_digits(self) -> None:
        code = self.make_plugin().code_at(self.serial, self.step_start)
        assert CODE_RE.match(code), "codes must match ^[0-9]{6}$"

    def test_unknown_serial_raises_an_mfa_error(self) -> None:
        plugin = self.make_plugin()
        assert plugin.has_seed(self.unknown) is False
        with pytest.raises(MfaError):
            plugin.code_at(self.unknown, self.step_start)

    def test_has_seed_for_its_serial(self) -> None:
        assert self.make_plugin().has_seed(self.serial) is True

    def test_a_code_belongs_to_its_30_s_step(self) -> None:
        plugin = self.make_plugin()
        first = plugin.code_at(self.serial, self.step_start)
        assert plugin.code_at(self.serial, self.step_start + 29) == first
        steps = {plugin.code_at(self.serial, self.step_start + 30 * n) for n in range(4)}
        assert len(steps) > 1, "four steps in a row gave one code"

    def test_configured_copy_gives_the_same_codes(self) -> None:
        plugin = self.make_plugin()
        touched: list[str] = []
        copy = plugin.configured(names={}, on_touch=touched.append)
        assert isinstance(copy, CodeSource)
        assert copy.has_seed(self.serial) is True
        assert copy.code_at(self.serial, self.step_start) == plugin.code_at(
            self.serial, self.step_start
        )
        assert all(isinstance(message, str) for message in touched)


class KeyStoreContract(abc.ABC):
    """What every :class:`~vaultd.plugin.api.KeyStore` does: a persistent AES-256-GCM key, an
    audit MAC key and a store generation, as the daemon uses them."""

    @abc.abstractmethod
    def make_plugin(self) -> KeyStore:
        """A store that is available; two calls must reach the same persistent keys."""

    def config(self, label: str = "contract-kek") -> KeyStoreConfig:
        """The config used to open a key named ``label``."""
        return KeyStoreConfig(key_label=label)

    def _sealed(self, wrapper: KeyWrapper) -> tuple[bytes, bytes]:
        iv = wrapper.random(12)
        return iv, wrapper.encrypt(iv, b"record plaintext", b"aad:v1")

    def test_is_a_key_store_and_says_whether_it_is_hardware(self) -> None:
        plugin = self.make_plugin()
        assert isinstance(plugin, KeyStore)
        assert plugin.is_available() is True
        assert isinstance(plugin.is_hardware, bool)

    def test_round_trip_with_a_16_byte_tag(self) -> None:
        wrapper = self.make_plugin().open(self.config())
        iv, sealed = self._sealed(wrapper)
        assert len(sealed) == len(b"record plaintext") + 16
        assert b"record plaintext" not in sealed
        assert wrapper.decrypt(iv, sealed, b"aad:v1") == b"record plaintext"

    @pytest.mark.parametrize("part", ["iv", "ciphertext", "tag", "aad"])
    def test_any_tamper_raises_record_corrupt(self, part: str) -> None:
        wrapper = self.make_plugin().open(self.config())
        iv, sealed = self._sealed(wrapper)
        aad = b"aad:v1"
        flip = {"iv": 0, "ciphertext": 0, "tag": len(sealed) - 1}
        if part == "iv":
            iv = bytes([iv[0] ^ 1]) + iv[1:]
        elif part == "aad":
            aad = b"aad:v2"
        else:
            at = flip[part]
            sealed = sealed[:at] + bytes([sealed[at] ^ 1]) + sealed[at + 1 :]
        with pytest.raises(RecordCorrupt):
            wrapper.decrypt(iv, sealed, aad)

    def test_key_persists_across_opens_and_stores(self) -> None:
        first = self.make_plugin().open(self.config())
        iv, sealed = self._sealed(first)
        again = self.make_plugin().open(self.config())
        assert again.key_id == first.key_id
        assert again.decrypt(iv, sealed, b"aad:v1") == b"record plaintext"

    def test_labels_name_different_keys(self) -> None:
        plugin = self.make_plugin()
        one = plugin.open(self.config("contract-one"))
        two = plugin.open(self.config("contract-two"))
        assert one.key_id != two.key_id
        iv, sealed = self._sealed(one)
        with pytest.raises(RecordCorrupt):
            two.decrypt(iv, sealed, b"aad:v1")

    def test_opened_key_carries_a_vault(self) -> None:
        assert isinstance(self.make_plugin().open(self.config()), KeyStoreBacking)

    def test_audit_mac_is_keyed_persistent_and_per_label(self) -> None:
        first = self.make_plugin().open(self.config())
        tag = first.mac(b"audit record")
        assert len(tag) == 32
        assert first.mac(b"audit record!") != tag
        assert self.make_plugin().open(self.config()).mac(b"audit record") == tag
        assert self.make_plugin().open(self.config("contract-other")).mac(b"audit record") != tag

    def test_generation_starts_at_zero_and_persists(self) -> None:
        fresh = self.make_plugin().open(self.config("contract-generation"))
        assert fresh.read_generation() == 0
        fresh.write_generation(7)
        assert self.make_plugin().open(self.config("contract-generation")).read_generation() == 7

    def test_random_gives_fresh_bytes_of_the_asked_length(self) -> None:
        wrapper = self.make_plugin().open(self.config())
        a, b = wrapper.random(32), wrapper.random(32)
        assert len(a) == 32
        assert a != b
