"""An emulated YubiKey PIV applet for tests and the demo. It protects NOTHING.

Pure: :meth:`PivCard.transmit` takes a command APDU and returns the response APDU; the state
(private keys in clear, PIN, PUK, management key, data objects) sits in a JSON file (mode 0600).
Written from NIST SP 800-73-4 and Yubico's published PIV extensions, to be driven unchanged by
Yubico's ykcs11 2.2, OpenSC 0.23's PIV driver and yubikit's ``PivSession``.

Protocol facts relied on:

- SELECT (``A4 04 00``) by the PIV AID or its 5-byte RID prefix answers the application property
  template ``61 { 4F 06 000010000100, 79 { 4F 05 A000000308 } }``; OpenSC wants that PIX.  Any
  SELECT drops the verified PIN and management key, as a YubiKey does (not as SP 800-73 says).
- VERIFY/CHANGE REFERENCE/RESET RETRY take 8-byte PINs padded with ``FF``; a wrong one answers
  ``63 Cx`` (x tries left), a blocked one ``69 83``; an empty VERIFY reports the state.
- Yubico extensions: GET VERSION ``FD`` (3 bytes), GET SERIAL ``F8`` (4 bytes), GET METADATA
  ``F7`` (``01`` algorithm, ``02`` PIN and touch policy, ``03`` origin, ``04`` public key, ``05``
  is-default, ``06`` retries total/left; ``6A 88`` for an empty slot), SET MANAGEMENT KEY ``FF``.
- GENERAL AUTHENTICATE (``87``) wraps its data in ``7C``. For the management key (slot ``9B``,
  P1 ``03`` 3DES or ``0A`` AES-192): ``80`` empty asks for a witness (random block encrypted under
  the key); ``80`` decrypted witness plus ``81`` host challenge answers ``82`` (the challenge
  encrypted); ``81`` empty asks for a challenge the host answers with ``82``. For a private key:
  ``82`` empty plus ``81`` data signs (ECDSA on the left-padded hash, DER; raw RSA), ``85`` peer
  point does ECDH and answers the shared X coordinate.
- GENERATE ASYMMETRIC (``47``, P2 slot) takes ``AC { 80 alg, [AA pin policy], [AB touch
  policy] }`` and answers ``7F49 { 86 point }`` or ``7F49 { 81 n, 82 e }``; it needs the
  management key.
- PIN policy: never, once (per card session) or always (a VERIFY just before each use). Touch
  policy: never, always, or cached (15 s after a touch). A touch that does not come answers
  ``69 82``, as a YubiKey does when its touch times out.
- Defaults: retired slots and ``9A``/``9D`` PIN once, ``9C`` always, ``9E`` never; touch never.
- Quirks learned from the modules: ykcs11 2.2's first C_OpenSession sends, per key slot, ATTEST
  (``F9``; this card answers ``6D 00``, so ykcs11 falls back to GET METADATA), then GET DATA for
  every PIV object: 84 APDUs on a card with one key. ykcs11 2.2 authenticates the management key
  with 3DES only (P1 ``03``), so it cannot log the SO in on a card with an AES key. OpenSC lists
  retired slots only if the Key History object (``5FC10C``, tag ``C1`` = number of retired keys
  with on-card certificates) says so, and finds keys only through their certificates.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from vaultd.testing.iso7816 import (
    SW_AUTH_BLOCKED,
    SW_CLA_NOT_SUPPORTED,
    SW_FILE_NOT_FOUND,
    SW_INCORRECT_P1P2,
    SW_INS_NOT_SUPPORTED,
    SW_REFERENCE_NOT_FOUND,
    SW_SECURITY_STATUS,
    SW_WRONG_DATA,
    SW_WRONG_LENGTH,
    ChainingTransport,
    Command,
    StatusError,
    tlv,
    tlv_dict,
)

logger = logging.getLogger(__name__)

PIV_AID = bytes.fromhex("A000000308000010000100")
DEFAULT_PIN = "123456"
DEFAULT_PUK = "12345678"
DEFAULT_MANAGEMENT_KEY = bytes.fromhex("010203040506070801020304050607080102030405060708")

ALG_3DES, ALG_AES192 = 0x03, 0x0A
ALG_RSA2048, ALG_P256, ALG_P384 = 0x07, 0x11, 0x14
PIN_NEVER, PIN_ONCE, PIN_ALWAYS = 1, 2, 3
TOUCH_NEVER, TOUCH_ALWAYS, TOUCH_CACHED = 1, 2, 3
TOUCH_CACHE_SECONDS = 15.0

_SLOT_MGMT, _REF_PIN, _REF_PUK = 0x9B, 0x80, 0x81
_KEY_SLOTS = frozenset([0x9A, 0x9C, 0x9D, 0x9E, *range(0x82, 0x96)])
_DEFAULT_PIN_POLICY = {0x9C: PIN_ALWAYS, 0x9E: PIN_NEVER}
_CURVES: dict[int, ec.EllipticCurve] = {ALG_P256: ec.SECP256R1(), ALG_P384: ec.SECP384R1()}
_HASH_FOR: dict[int, hashes.HashAlgorithm] = {ALG_P256: hashes.SHA256(), ALG_P384: hashes.SHA384()}
_PIN_PROTECTED_OBJECTS = frozenset([0x5FC103, 0x5FC108, 0x5FC109, 0x5FC121])
_DISCOVERY = tlv(0x7E, tlv(0x4F, PIV_AID) + tlv(0x5F2F, b"\x40\x10"))
_SELECT_REPLY = tlv(0x61, tlv(0x4F, PIV_AID[5:]) + tlv(0x79, tlv(0x4F, PIV_AID[:5])))

Touch = Callable[[float], bool]
"""Waits up to the given number of seconds for a touch; says whether it came."""


def touch_auto(_timeout: float) -> bool:
    """A touch that comes at once."""
    return True


def touch_never(timeout: float) -> bool:
    """A touch that never comes: waits the whole timeout, as a YubiKey does."""
    time.sleep(timeout)
    return False


@dataclass
class SlotKey:
    """A private key in a slot, with its policies."""

    algorithm: int
    pin_policy: int
    touch_policy: int
    generated: bool
    pkcs8_hex: str

    def private_key(self) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
        """Load the key (PKCS#8, unencrypted)."""
        key = serialization.load_der_private_key(bytes.fromhex(self.pkcs8_hex), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise TypeError("unexpected key type in the card state")
        return key


@dataclass
class PivState:
    """Everything the card keeps across power cycles (saved as JSON)."""

    serial: int
    version: tuple[int, int, int] = (5, 4, 3)
    pin: str = DEFAULT_PIN
    puk: str = DEFAULT_PUK
    pin_total: int = 3
    pin_left: int = 3
    puk_total: int = 3
    puk_left: int = 3
    mgmt_algorithm: int = ALG_3DES
    mgmt_key_hex: str = DEFAULT_MANAGEMENT_KEY.hex()
    keys: dict[int, SlotKey] = field(default_factory=dict)
    objects: dict[int, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> PivState:
        """Read a state file written by :meth:`save`."""
        raw = json.loads(path.read_text())
        raw["version"] = tuple(raw["version"])
        raw["keys"] = {int(k): SlotKey(**v) for k, v in raw["keys"].items()}
        raw["objects"] = {int(k): v for k, v in raw["objects"].items()}
        return cls(**raw)

    def save(self, path: Path) -> None:
        """Write atomically, mode 0600."""
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(asdict(self), fh, indent=1)
        os.replace(tmp, path)


def _mgmt_cipher(algorithm: int, key: bytes) -> Cipher[modes.ECB]:
    if algorithm == ALG_3DES:
        # Lazy: 3DES lives in cryptography's decrepit module; only 3DES management keys need it.
        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES

        return Cipher(TripleDES(key), modes.ECB())  # noqa: S305 (one block, as PIV specifies)
    return Cipher(algorithms.AES(key), modes.ECB())  # noqa: S305


def _ecb(cipher: Cipher[modes.ECB], block: bytes, *, encrypt: bool) -> bytes:
    ctx = cipher.encryptor() if encrypt else cipher.decryptor()
    return ctx.update(block) + ctx.finalize()


def _pin_value(padded: bytes) -> str:
    if len(padded) != 8:
        raise StatusError(SW_WRONG_DATA)
    return padded.rstrip(b"\xff").decode("latin-1")


def _public_tlvs(key: SlotKey) -> bytes:
    public = key.private_key().public_key()
    if isinstance(public, rsa.RSAPublicKey):
        nums = public.public_numbers()
        return tlv(0x81, nums.n.to_bytes(public.key_size // 8, "big")) + tlv(
            0x82, nums.e.to_bytes(3, "big")
        )
    return tlv(
        0x86,
        public.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        ),
    )


class PivCard:
    """The PIV applet: APDUs in, APDUs out. Not thread-safe; one reader thread drives it."""

    def __init__(
        self,
        state_path: Path,
        *,
        touch: Touch = touch_auto,
        touch_timeout: float = 15.0,
    ) -> None:
        """Load the card from ``state_path``, or make a fresh one there."""
        logger.critical("emulated PIV card: tests and demo only, keys in clear (%s)", state_path)
        self.path = state_path
        if state_path.exists():
            self.state = PivState.load(state_path)
        else:
            self.state = PivState(serial=secrets.randbelow(90_000_000) + 10_000_000)
            self.state.save(state_path)
        self.touch = touch
        self.touch_timeout = touch_timeout
        self.touches = 0
        self.logouts = 0
        """SELECTs that dropped a verified PIN (another program logged this card out)."""
        self._transport = ChainingTransport(self._dispatch)
        self.power_cycle()

    def power_cycle(self) -> None:
        """Drop everything a card forgets when it loses power or is reset."""
        self._transport.reset()
        self._pin_ok = False
        self._pin_fresh = False
        self._mgmt_ok = False
        self._mgmt_witness: bytes | None = None
        self._mgmt_challenge: bytes | None = None
        self._last_touch = float("-inf")

    def transmit(self, apdu: bytes) -> bytes:
        """Process one command APDU; return the response APDU."""
        return self._transport.transmit(apdu)

    # -- dispatch ---------------------------------------------------------------------------

    def _dispatch(self, cmd: Command) -> bytes:
        if cmd.cla & ~0x10:
            raise StatusError(SW_CLA_NOT_SUPPORTED)
        handler = self._handlers.get(cmd.ins)
        if handler is None:
            raise StatusError(SW_INS_NOT_SUPPORTED)
        fresh = self._pin_fresh
        try:
            return handler(self, cmd)
        finally:
            if fresh and cmd.ins != 0x20:
                self._pin_fresh = False

    def _select(self, cmd: Command) -> bytes:
        # A YubiKey (4 and later) drops its security status on any SELECT, of the PIV applet
        # again or of an AID it does not have, though NIST SP 800-73 says both keep it: another
        # process's SELECT (yubikit, OpenSC probing its card drivers) logs every connection out.
        self.logouts += self._pin_ok
        self._pin_ok = self._pin_fresh = self._mgmt_ok = False
        if cmd.p1 != 0x04 or len(cmd.data) < 5 or not PIV_AID.startswith(cmd.data):
            raise StatusError(SW_FILE_NOT_FOUND)
        return _SELECT_REPLY

    def _version(self, cmd: Command) -> bytes:
        return bytes(self.state.version)

    def _serial(self, cmd: Command) -> bytes:
        return self.state.serial.to_bytes(4, "big")

    # -- PIN and PUK ------------------------------------------------------------------------

    def _verify(self, cmd: Command) -> bytes:
        if cmd.p2 != _REF_PIN:
            raise StatusError(SW_REFERENCE_NOT_FOUND)
        if cmd.p1 == 0xFF:
            self._pin_ok = self._pin_fresh = False
            return b""
        if not cmd.data:
            if self._pin_ok:
                return b""
            raise StatusError(self._tries_sw(self.state.pin_left))
        self._check_pin(_pin_value(cmd.data))
        self._pin_ok = self._pin_fresh = True
        return b""

    def _check_pin(self, pin: str) -> None:
        st = self.state
        if st.pin_left == 0:
            raise StatusError(SW_AUTH_BLOCKED)
        if not hmac.compare_digest(pin.encode("latin-1"), st.pin.encode("latin-1")):
            st.pin_left -= 1
            self._pin_ok = self._pin_fresh = False
            st.save(self.path)
            raise StatusError(self._tries_sw(st.pin_left))
        if st.pin_left != st.pin_total:
            st.pin_left = st.pin_total
            st.save(self.path)

    def _check_puk(self, puk: str) -> None:
        st = self.state
        if st.puk_left == 0:
            raise StatusError(SW_AUTH_BLOCKED)
        if not hmac.compare_digest(puk.encode("latin-1"), st.puk.encode("latin-1")):
            st.puk_left -= 1
            st.save(self.path)
            raise StatusError(self._tries_sw(st.puk_left))
        st.puk_left = st.puk_total

    @staticmethod
    def _tries_sw(left: int) -> int:
        return SW_AUTH_BLOCKED if left == 0 else 0x63C0 | min(left, 15)

    def _change_reference(self, cmd: Command) -> bytes:
        if cmd.p2 not in (_REF_PIN, _REF_PUK):
            raise StatusError(SW_REFERENCE_NOT_FOUND)
        if len(cmd.data) != 16:
            raise StatusError(SW_WRONG_DATA)
        old, new = _pin_value(cmd.data[:8]), _pin_value(cmd.data[8:])
        if cmd.p2 == _REF_PIN:
            self._check_pin(old)
        else:
            self._check_puk(old)
        if len(new) < 6:
            raise StatusError(SW_WRONG_DATA)
        if cmd.p2 == _REF_PIN:
            self.state.pin = new
        else:
            self.state.puk = new
        self.state.save(self.path)
        return b""

    def _reset_retry(self, cmd: Command) -> bytes:
        if cmd.p2 != _REF_PIN:
            raise StatusError(SW_REFERENCE_NOT_FOUND)
        if len(cmd.data) != 16:
            raise StatusError(SW_WRONG_DATA)
        self._check_puk(_pin_value(cmd.data[:8]))
        new = _pin_value(cmd.data[8:])
        if len(new) < 6:
            raise StatusError(SW_WRONG_DATA)
        self.state.pin, self.state.pin_left = new, self.state.pin_total
        self.state.save(self.path)
        return b""

    # -- metadata ---------------------------------------------------------------------------

    def _metadata(self, cmd: Command) -> bytes:
        st = self.state
        if cmd.p2 == _REF_PIN:
            return (
                tlv(0x01, b"\xff")
                + tlv(0x05, bytes([st.pin == DEFAULT_PIN]))
                + tlv(0x06, bytes([st.pin_total, st.pin_left]))
            )
        if cmd.p2 == _REF_PUK:
            return (
                tlv(0x01, b"\xff")
                + tlv(0x05, bytes([st.puk == DEFAULT_PUK]))
                + tlv(0x06, bytes([st.puk_total, st.puk_left]))
            )
        if cmd.p2 == _SLOT_MGMT:
            default = bytes.fromhex(st.mgmt_key_hex) == DEFAULT_MANAGEMENT_KEY
            return (
                tlv(0x01, bytes([st.mgmt_algorithm]))
                + tlv(0x02, bytes([0x00, TOUCH_NEVER]))
                + tlv(0x05, bytes([default]))
            )
        key = st.keys.get(cmd.p2)
        if key is None:
            raise StatusError(SW_REFERENCE_NOT_FOUND)
        return (
            tlv(0x01, bytes([key.algorithm]))
            + tlv(0x02, bytes([key.pin_policy, key.touch_policy]))
            + tlv(0x03, b"\x01" if key.generated else b"\x02")
            + tlv(0x04, _public_tlvs(key))
        )

    # -- data objects -----------------------------------------------------------------------

    @staticmethod
    def _object_id(data: bytes) -> tuple[int, bytes]:
        if len(data) < 3 or data[0] != 0x5C or data[1] > 3 or len(data) < 2 + data[1]:
            raise StatusError(SW_WRONG_DATA)
        end = 2 + data[1]
        return int.from_bytes(data[2:end], "big"), data[end:]

    def _get_data(self, cmd: Command) -> bytes:
        if (cmd.p1, cmd.p2) != (0x3F, 0xFF):
            raise StatusError(SW_INCORRECT_P1P2)
        oid, _ = self._object_id(cmd.data)
        if oid == 0x7E:
            return _DISCOVERY
        if oid in _PIN_PROTECTED_OBJECTS and not self._pin_ok:
            raise StatusError(SW_SECURITY_STATUS)
        value = self.state.objects.get(oid)
        if value is None:
            raise StatusError(SW_FILE_NOT_FOUND)
        return bytes.fromhex(value)

    def _put_data(self, cmd: Command) -> bytes:
        if (cmd.p1, cmd.p2) != (0x3F, 0xFF):
            raise StatusError(SW_INCORRECT_P1P2)
        self._need_mgmt()
        oid, body = self._object_id(cmd.data)
        if oid == 0x7E or not 0x5FC100 <= oid <= 0x5FFFFF:
            raise StatusError(SW_FILE_NOT_FOUND)
        parsed = tlv_dict(body)
        if parsed.get(0x53, b"x") == b"" and len(body) == 2:
            self.state.objects.pop(oid, None)
        elif 0x53 in parsed:
            self.state.objects[oid] = body.hex()
        else:
            raise StatusError(SW_WRONG_DATA)
        self.state.save(self.path)
        return b""

    # -- management key ---------------------------------------------------------------------

    def _need_mgmt(self) -> None:
        if not self._mgmt_ok:
            raise StatusError(SW_SECURITY_STATUS)

    def _mgmt_authenticate(self, cmd: Command, fields: dict[int, bytes]) -> bytes:
        st = self.state
        if cmd.p1 != st.mgmt_algorithm:
            raise StatusError(SW_INCORRECT_P1P2)
        cipher = _mgmt_cipher(st.mgmt_algorithm, bytes.fromhex(st.mgmt_key_hex))
        block = 8 if st.mgmt_algorithm == ALG_3DES else 16
        witness, challenge, response = fields.get(0x80), fields.get(0x81), fields.get(0x82)
        self._mgmt_ok = False
        if witness == b"" and challenge is None:
            self._mgmt_witness = secrets.token_bytes(block)
            return tlv(0x7C, tlv(0x80, _ecb(cipher, self._mgmt_witness, encrypt=True)))
        if witness and challenge is not None and len(challenge) == block:
            expected, self._mgmt_witness = self._mgmt_witness, None
            if expected is None or not hmac.compare_digest(witness, expected):
                raise StatusError(SW_SECURITY_STATUS)
            self._mgmt_ok = True
            return tlv(0x7C, tlv(0x82, _ecb(cipher, challenge, encrypt=True)))
        if challenge == b"" and witness is None:
            self._mgmt_challenge = secrets.token_bytes(block)
            return tlv(0x7C, tlv(0x81, self._mgmt_challenge))
        if response and challenge is None:
            sent, self._mgmt_challenge = self._mgmt_challenge, None
            if sent is None or not hmac.compare_digest(response, _ecb(cipher, sent, encrypt=True)):
                raise StatusError(SW_SECURITY_STATUS)
            self._mgmt_ok = True
            return b""
        raise StatusError(SW_WRONG_DATA)

    def _set_mgmt_key(self, cmd: Command) -> bytes:
        self._need_mgmt()
        if cmd.p1 != 0xFF or cmd.p2 != 0xFF:
            raise StatusError(SW_INCORRECT_P1P2)
        if len(cmd.data) != 27 or cmd.data[1:3] != b"\x9b\x18":
            raise StatusError(SW_WRONG_DATA)
        if cmd.data[0] not in (ALG_3DES, ALG_AES192):
            raise StatusError(SW_WRONG_DATA)
        self.state.mgmt_algorithm = cmd.data[0]
        self.state.mgmt_key_hex = cmd.data[3:].hex()
        self.state.save(self.path)
        return b""

    # -- private keys -----------------------------------------------------------------------

    def _generate(self, cmd: Command) -> bytes:
        self._need_mgmt()
        if cmd.p2 not in _KEY_SLOTS:
            raise StatusError(SW_INCORRECT_P1P2)
        template = tlv_dict(tlv_dict(cmd.data).get(0xAC, b""))
        alg = template.get(0x80, b"\x00")[0]
        pin_policy = template.get(0xAA, b"\x00")[0] or _DEFAULT_PIN_POLICY.get(cmd.p2, PIN_ONCE)
        touch_policy = template.get(0xAB, b"\x00")[0] or TOUCH_NEVER
        if pin_policy not in (PIN_NEVER, PIN_ONCE, PIN_ALWAYS):
            raise StatusError(SW_WRONG_DATA)
        if touch_policy not in (TOUCH_NEVER, TOUCH_ALWAYS, TOUCH_CACHED):
            raise StatusError(SW_WRONG_DATA)
        private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
        if alg in _CURVES:
            private = ec.generate_private_key(_CURVES[alg])
        elif alg == ALG_RSA2048:
            private = rsa.generate_private_key(65537, 2048)
        else:
            raise StatusError(SW_WRONG_DATA)
        pkcs8 = private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        key = SlotKey(alg, pin_policy, touch_policy, True, pkcs8.hex())
        self.state.keys[cmd.p2] = key
        self.state.save(self.path)
        return tlv(0x7F49, _public_tlvs(key))

    def _authenticate(self, cmd: Command) -> bytes:
        fields = tlv_dict(tlv_dict(cmd.data).get(0x7C, b""))
        if cmd.p2 == _SLOT_MGMT:
            return self._mgmt_authenticate(cmd, fields)
        key = self.state.keys.get(cmd.p2)
        if key is None:
            raise StatusError(SW_REFERENCE_NOT_FOUND)
        if cmd.p1 != key.algorithm or fields.get(0x82) != b"":
            raise StatusError(SW_INCORRECT_P1P2 if cmd.p1 != key.algorithm else SW_WRONG_DATA)
        self._allow_use(key)
        private = key.private_key()
        if 0x81 in fields:
            return tlv(0x7C, tlv(0x82, self._sign(key, private, fields[0x81])))
        if 0x85 in fields and isinstance(private, ec.EllipticCurvePrivateKey):
            try:
                peer = ec.EllipticCurvePublicKey.from_encoded_point(private.curve, fields[0x85])
            except ValueError as exc:
                raise StatusError(SW_WRONG_DATA) from exc
            return tlv(0x7C, tlv(0x82, private.exchange(ec.ECDH(), peer)))
        raise StatusError(SW_WRONG_DATA)

    def _allow_use(self, key: SlotKey) -> None:
        if key.pin_policy == PIN_ONCE and not self._pin_ok:
            raise StatusError(SW_SECURITY_STATUS)
        if key.pin_policy == PIN_ALWAYS and not self._pin_fresh:
            raise StatusError(SW_SECURITY_STATUS)
        if key.touch_policy == TOUCH_NEVER:
            return
        now = time.monotonic()
        if key.touch_policy == TOUCH_CACHED and now - self._last_touch < TOUCH_CACHE_SECONDS:
            return
        if not self.touch(self.touch_timeout):
            raise StatusError(SW_SECURITY_STATUS)
        self.touches += 1
        self._last_touch = time.monotonic()

    @staticmethod
    def _sign(
        key: SlotKey, private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, data: bytes
    ) -> bytes:
        if isinstance(private, rsa.RSAPrivateKey):
            nums = private.private_numbers()
            size = private.key_size // 8
            value = int.from_bytes(data, "big")
            if len(data) != size or value >= nums.public_numbers.n:
                raise StatusError(SW_WRONG_DATA)
            return pow(value, nums.d, nums.public_numbers.n).to_bytes(size, "big")
        size = (private.curve.key_size + 7) // 8
        if len(data) > size:
            raise StatusError(SW_WRONG_LENGTH)
        digest = data.rjust(size, b"\x00")
        return private.sign(digest, ec.ECDSA(utils.Prehashed(_HASH_FOR[key.algorithm])))

    _handlers: ClassVar[dict[int, Callable[[PivCard, Command], bytes]]] = {
        0xA4: _select,
        0x20: _verify,
        0x24: _change_reference,
        0x2C: _reset_retry,
        0x47: _generate,
        0x87: _authenticate,
        0xCB: _get_data,
        0xDB: _put_data,
        0xF7: _metadata,
        0xF8: _serial,
        0xFD: _version,
        0xFF: _set_mgmt_key,
    }
