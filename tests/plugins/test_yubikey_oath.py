"""The YubiKey OATH code source.

No YubiKey is attached here, so the tests use a fake at the protocol boundary: ``FakeOathCard``
is a ``SmartCardConnection`` that answers the OATH applet's real APDUs (SELECT, LIST, CALCULATE,
CALCULATE_ALL, SEND REMAINING; short and extended encodings; BER-TLV; the touch-required
answer) and computes HOTP/TOTP itself from known secrets, so yubikit's ``OathSession`` runs
unmodified against it. Its TLV and OTP code is written here, independently of yubikit's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyotp
import pytest
from vaultd.plugins.yubikey_oath import TOUCH_PROMPT, YubiKeyOath
from yubikit.core import TRANSPORT
from yubikit.core.smartcard import SmartCardConnection

from vaultd.app import oath_code_source
from vaultd.core.otp_ledger import OtpLedger
from vaultd.errors import ApprovalTimeout, CodeReused, ConfigError, MfaError, PluginError
from vaultd.mfa.plugin_codes import ChainedCodeSource, PluginCodeSource
from vaultd.plugin.api import CodeSource
from vaultd.plugin.registry import Kind, LoadedPlugins, PluginReport, State, load_plugins
from vaultd.settings import Settings
from vaultd.testing.clock import FakeClock
from vaultd.testing.contracts import CodeSourceContract

RFC_SECRET = b"12345678901234567890"  # RFC 6238 appendix B (SHA-1)
SERIAL = "arn:aws:iam::123456789012:mfa/alice"
OATH_AID = bytes.fromhex("a0000005272101")
OK = 0x9000


def tlv(tag: int, value: bytes) -> bytes:
    """One BER-TLV with a one-byte tag."""
    n = len(value)
    length = bytes([n]) if n < 0x80 else bytes([0x81, n]) if n < 0x100 else b"\x82" + n.to_bytes(2)
    return bytes([tag]) + length + value


def parse_tlvs(data: bytes) -> list[tuple[int, bytes]]:
    out, i = [], 0
    while i < len(data):
        tag, n = data[i], data[i + 1]
        i += 2
        if n & 0x80:
            size = n & 0x7F
            n, i = int.from_bytes(data[i : i + size]), i + size
        out.append((tag, data[i : i + n]))
        i += n
    return out


@dataclass
class Cred:
    """One credential in the fake applet."""

    id: str
    secret: bytes
    hotp: bool = False
    touch: bool = False
    digits: int = 6
    counter: int = 0

    def truncated(self, challenge: bytes) -> bytes:
        message = self.counter.to_bytes(8) if self.hotp else challenge
        if self.hotp:
            self.counter += 1
        mac = hmac.new(self.secret, message, hashlib.sha1).digest()
        offset = mac[-1] & 0x0F
        return bytes([self.digits]) + mac[offset : offset + 4]


class FakeOathCard(SmartCardConnection):
    """A YubiKey 5 OATH applet behind a smart-card connection (see the module docstring)."""

    def __init__(
        self,
        creds: list[Cred],
        *,
        touch: Callable[[], bool] = lambda: True,
        password: bool = False,
        max_response: int = 48,
    ) -> None:
        self.creds = {c.id.encode(): c for c in creds}
        self.touch = touch
        self.password = password
        self.max_response = max_response
        self.open = 0
        self.sent: list[int] = []
        self._selected = False
        self._pending = b""

    def opener(self) -> FakeOathCard:
        self.open += 1
        return self

    @property
    def transport(self) -> TRANSPORT:
        return TRANSPORT.USB

    def close(self) -> None:
        self.open -= 1

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        ins, p1, p2 = apdu[1], apdu[2], apdu[3]
        if len(apdu) > 6 and apdu[4] == 0:  # extended: 00 Lc(2) data
            size = int.from_bytes(apdu[5:7])
            data = apdu[7 : 7 + size]
        else:  # short: Lc data, or a lone 00
            data = apdu[5 : 5 + apdu[4]] if len(apdu) > 4 else b""
        self.sent.append(ins)
        if ins == 0xA4 and p1 == 0x04:
            return self._select(data)
        if not self._selected:
            return b"", 0x6D00
        if ins == 0xA5:
            return self._chunk(self._pending)
        if ins == 0xA1:
            names = b"".join(tlv(0x72, bytes([self._kind(c)]) + k) for k, c in self.creds.items())
            return self._chunk(names)
        if ins == 0xA4 and p2 == 0x01:
            return self._calculate_all(dict(parse_tlvs(data))[0x74])
        if ins == 0xA2:
            return self._calculate(dict(parse_tlvs(data)), truncate=p2 == 0x01)
        return b"", 0x6D00

    def _select(self, aid: bytes) -> tuple[bytes, int]:
        if aid != OATH_AID:
            return b"", 0x6A82
        self._selected = True
        body = tlv(0x79, bytes([5, 4, 3])) + tlv(0x71, b"saltsalt")
        if self.password:
            body += tlv(0x74, b"chalchal")
        return body, OK

    def _kind(self, cred: Cred) -> int:
        return (0x10 if cred.hotp else 0x20) | 0x01  # type | SHA-1

    def _chunk(self, body: bytes) -> tuple[bytes, int]:
        head, self._pending = body[: self.max_response], body[self.max_response :]
        return head, (0x6100 | min(len(self._pending), 0xFF)) if self._pending else OK

    def _calculate_all(self, challenge: bytes) -> tuple[bytes, int]:
        body = b""
        for key, cred in self.creds.items():
            body += tlv(0x71, key)
            if cred.hotp:
                body += tlv(0x77, bytes([cred.digits]))
            elif cred.touch:
                body += tlv(0x7C, bytes([cred.digits]))
            else:
                body += tlv(0x76, cred.truncated(challenge))
        return self._chunk(body)

    def _calculate(self, fields: dict[int, bytes], *, truncate: bool) -> tuple[bytes, int]:
        cred = self.creds.get(fields.get(0x71, b""))
        if cred is None:
            return b"", 0x6984
        if cred.touch and not self.touch():
            return b"", 0x6982
        answer = cred.truncated(fields.get(0x74, b""))
        return tlv(0x76 if truncate else 0x75, answer), OK


def rfc_code(t: int) -> str:
    return pyotp.TOTP(base64.b32encode(RFC_SECRET).decode()).at(t)


def source(card: FakeOathCard, **kwargs: Any) -> YubiKeyOath:
    return YubiKeyOath(lambda: [card.opener], **kwargs)


class TestYubiKeyOathContract(CodeSourceContract):
    def make_plugin(self) -> CodeSource:
        return source(FakeOathCard([Cred(self.serial, RFC_SECRET)]))


@pytest.mark.parametrize(
    ("t", "code"), [(59, "287082"), (1111111109, "081804"), (1234567890, "005924")]
)
def test_codes_match_rfc6238_vectors_and_the_connection_is_closed(t: int, code: str) -> None:
    card = FakeOathCard([Cred("other", b"x" * 20), Cred(SERIAL, RFC_SECRET)], max_response=16)
    assert source(card).code_at(SERIAL, t) == code == rfc_code(t)
    assert card.open == 0
    assert 0xA5 in card.sent  # the answer came in chained parts


def test_a_mapped_serial_uses_the_named_credential() -> None:
    card = FakeOathCard([Cred("Amazon Web Services:alice@123456789012", RFC_SECRET)])
    plugin = source(card, names={SERIAL: "Amazon Web Services:alice@123456789012"})
    assert plugin.code_at(SERIAL, 59) == "287082"
    assert plugin.has_seed(SERIAL) is True
    assert source(card).has_seed(SERIAL) is False


def test_touch_credential_prompts_before_the_key_waits() -> None:
    events: list[str] = []

    def touched() -> bool:
        events.append("key waits for touch")
        return True

    card = FakeOathCard([Cred(SERIAL, RFC_SECRET, touch=True)], touch=touched)
    plugin = source(card, on_touch=events.append)
    assert plugin.code_at(SERIAL, 1234567890) == "005924"
    assert events == [TOUCH_PROMPT, "key waits for touch"]
    assert "touch your YubiKey" in TOUCH_PROMPT


def test_an_untouched_key_times_out() -> None:
    card = FakeOathCard([Cred(SERIAL, RFC_SECRET, touch=True)], touch=lambda: False)
    with pytest.raises(ApprovalTimeout, match="not touched in time"):
        source(card, on_touch=lambda _m: None).code_at(SERIAL, 59)
    assert card.open == 0


@pytest.mark.parametrize(
    "cred",
    [Cred(SERIAL, RFC_SECRET, hotp=True), Cred(SERIAL, RFC_SECRET, digits=8)],
    ids=["hotp", "8-digits"],
)
def test_credentials_aws_cannot_use_are_refused(cred: Cred) -> None:
    with pytest.raises(ConfigError):
        source(FakeOathCard([cred])).code_at(SERIAL, 59)


def test_a_password_protected_applet_is_reported() -> None:
    card = FakeOathCard([Cred(SERIAL, RFC_SECRET)], password=True)
    with pytest.raises(PluginError, match="password"):
        source(card).code_at(SERIAL, 59)


def test_no_reader_means_unavailable_and_no_key_means_plugin_unavailable() -> None:
    plugin = YubiKeyOath(lambda: [])
    assert plugin.is_available() is True  # a key may be plugged in later
    with pytest.raises(PluginError, match="no YubiKey is attached") as err:
        plugin.code_at(SERIAL, 59)
    assert err.value.code == "PLUGIN_UNAVAILABLE"

    def broken() -> list[Callable[[], SmartCardConnection]]:
        raise OSError("pcscd is not running")

    assert YubiKeyOath(broken).is_available() is False


def test_unknown_serial_is_an_mfa_error_naming_the_fix() -> None:
    with pytest.raises(MfaError, match="ykman oath accounts add"):
        source(FakeOathCard([])).code_at(SERIAL, 59)


def test_registry_loads_it_by_entry_point_and_finds_no_key_here() -> None:
    (report,) = [
        r
        for r in load_plugins(["mfa/yubikey-oath"], kinds=(Kind.MFA,)).reports
        if r.name == "yubikey-oath"
    ]
    assert report.state is State.UNAVAILABLE  # built and checked: no pcscd here


def test_ledgered_source_never_gives_a_step_twice() -> None:
    clock = FakeClock(datetime.fromtimestamp(1234567890, UTC))
    ledger = OtpLedger()
    codes = PluginCodeSource(source(FakeOathCard([Cred(SERIAL, RFC_SECRET)])), ledger, clock)
    assert codes.has_seed(SERIAL) is True
    assert codes.code_for(SERIAL) == (rfc_code(1234567890), 0.0)
    code, wait = codes.code_for(SERIAL)  # same step again: the next one, after a wait
    assert code == rfc_code(1234567890 + 30)
    assert wait == 30 - 1234567890 % 30
    with pytest.raises(CodeReused):
        codes.code_for(SERIAL)
    clock.advance(30)
    assert codes.code_for(SERIAL) == (rfc_code(1234567890 + 60), 30 - 1234567890 % 30)


class SeedSource:
    """A fake seed ``CodeSource`` (the real one needs a sealed store) knowing one serial."""

    def has_seed(self, serial: str) -> bool:
        return serial == "seeded-serial"

    def code_for(self, serial: str) -> tuple[str, float]:
        return "111111", 0.0


def test_chain_asks_the_first_source_that_has_the_serial() -> None:
    clock = FakeClock(datetime.fromtimestamp(59, UTC))
    oath = PluginCodeSource(source(FakeOathCard([Cred(SERIAL, RFC_SECRET)])), OtpLedger(), clock)
    chain = ChainedCodeSource(SeedSource(), oath)
    assert chain.code_for("seeded-serial") == ("111111", 0.0)
    assert chain.code_for(SERIAL) == ("287082", 0.0)
    assert chain.has_seed("arn:aws:iam::123456789012:mfa/nobody") is False
    with pytest.raises(MfaError, match="no code source"):
        chain.code_for("arn:aws:iam::123456789012:mfa/nobody")


def test_oath_code_source_is_built_from_settings_and_loaded_plugins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VAULTD_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    card = FakeOathCard([Cred("AWS:alice", RFC_SECRET, touch=True)])
    prompts: list[str] = []
    report = PluginReport(Kind.MFA, "yubikey-oath", "x:Y", "vaultd", State.LOADED, "", source(card))
    loaded = LoadedPlugins((report,))
    clock = FakeClock(datetime.fromtimestamp(59, UTC))
    names = {
        "plugins": {"allow": ["mfa/yubikey-oath"], "yubikey_oath_names": {SERIAL: "AWS:alice"}}
    }

    codes = oath_code_source(Settings(**names), loaded, OtpLedger(), clock, on_touch=prompts.append)
    assert codes is not None
    assert codes.code_for(SERIAL) == ("287082", 0.0)
    assert prompts == [TOUCH_PROMPT]
    assert oath_code_source(Settings(), loaded, OtpLedger(), clock, on_touch=print) is None
