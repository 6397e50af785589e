"""A software CTAP2 authenticator for tests and the demo. It protects NOTHING.

Its private keys, PIN hash and counter sit in clear in a JSON state file. python-fido2 drives it
through the ``CtapDevice`` interface with real canonical CBOR and real ES256 signatures. The
PIN/UV protocol and hmac-secret crypto here are written from the CTAP 2.1 text, independently of
python-fido2's, so a bug in one side cannot hide in both.

Touch is set in the state file: ``auto`` (touched after ``delay`` seconds), ``refuse``
(OPERATION_DENIED), ``timeout`` (USER_ACTION_TIMEOUT after ``delay``) or ``cancel`` (never
touched: waits until the host cancels, at most 30 s). :meth:`SoftCtap2Device.tamper_next`
bends the next touched assertion for refusal tests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import struct
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fido2 import cbor
from fido2.ctap import STATUS, CtapDevice, CtapError
from fido2.hid import CAPABILITY, CTAPHID

logger = logging.getLogger(__name__)

ERR = CtapError.ERR
_MAX_RETRIES = 8
_CANCEL_WAIT_CAP = 30.0
_PERM_MC, _PERM_GA = 0x01, 0x02
_UP, _UV, _AT, _ED = 0x01, 0x04, 0x40, 0x80
_TOUCH_MODES = ("auto", "refuse", "timeout", "cancel")


class _Fail(Exception):
    """Ends a command with a CTAP status byte."""

    def __init__(self, status: ERR) -> None:
        super().__init__(status.name)
        self.status = status


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _cose(key: ec.EllipticCurvePrivateKey, alg: int) -> dict[int, Any]:
    nums = key.public_key().public_numbers()
    return {1: 2, 3: alg, -1: 1, -2: nums.x.to_bytes(32, "big"), -3: nums.y.to_bytes(32, "big")}


class _PinCrypto:
    """Authenticator side of PIN/UV auth protocols 1 and 2 (CTAP 2.1 §6.5.6, §6.5.7)."""

    def __init__(self, version: object, supported: list[int]) -> None:
        if version not in supported:
            raise _Fail(ERR.INVALID_PARAMETER)
        self.v2 = version == 2

    def shared_secret(self, own: ec.EllipticCurvePrivateKey, peer: object) -> bytes:
        try:
            assert isinstance(peer, Mapping)  # noqa: S101 (narrowing only; errors are mapped)
            point = ec.EllipticCurvePublicNumbers(
                int.from_bytes(peer[-2], "big"), int.from_bytes(peer[-3], "big"), ec.SECP256R1()
            ).public_key()
        except (AssertionError, KeyError, TypeError, ValueError) as exc:
            raise _Fail(ERR.INVALID_PARAMETER) from exc
        z = own.exchange(ec.ECDH(), point)
        if not self.v2:
            return _sha256(z)
        return b"".join(
            HKDF(hashes.SHA256(), 32, b"\0" * 32, info).derive(z)
            for info in (b"CTAP2 HMAC key", b"CTAP2 AES key")
        )

    def _cipher(self, shared: bytes, iv: bytes) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(shared[32:] if self.v2 else shared), modes.CBC(iv))

    def encrypt(self, shared: bytes, data: bytes) -> bytes:
        iv = secrets.token_bytes(16) if self.v2 else bytes(16)
        enc = self._cipher(shared, iv).encryptor()
        return (iv if self.v2 else b"") + enc.update(data) + enc.finalize()

    def decrypt(self, shared: bytes, data: object) -> bytes:
        if not isinstance(data, bytes) or len(data) % 16 or len(data) < (32 if self.v2 else 16):
            raise _Fail(ERR.INVALID_LENGTH)
        iv, body = (data[:16], data[16:]) if self.v2 else (bytes(16), data)
        dec = self._cipher(shared, iv).decryptor()
        return dec.update(body) + dec.finalize()

    def check(self, key: bytes, message: bytes, tag: object) -> None:
        mac = hmac.new(key[:32], message, hashlib.sha256).digest()
        if not isinstance(tag, bytes) or not hmac.compare_digest(mac if self.v2 else mac[:16], tag):
            raise _Fail(ERR.PIN_AUTH_INVALID)


class _Power:
    """What a real key forgets when unplugged; shared by every handle on one state file."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.waiting_for_touch = threading.Event()
        self.replug()

    def replug(self) -> None:
        self.ka_key = ec.generate_private_key(ec.SECP256R1())
        self.token = secrets.token_bytes(32)
        self.token_perms: int = 0
        self.token_rp: str | None = None
        self.pin_fails = 0


_POWERED: dict[Path, _Power] = {}
_POWERED_LOCK = threading.Lock()


class SoftCtap2Device(CtapDevice):
    """An in-process CTAP2 authenticator whose state lives in a JSON file (tests and demo only).

    Handles opened on one path in one process share the "powered" state (key agreement key,
    PIN token, wrong-PIN streak) until :meth:`replug`.
    """

    def __init__(self, path: str | os.PathLike[str], *, pin_protocols: tuple[int, ...] = (2, 1)):
        logger.critical("software authenticator: tests and demo only (%s)", path)
        self.path = Path(path).resolve()
        with _POWERED_LOCK:
            self._p = _POWERED.setdefault(self.path, _Power())
        if not self.path.exists():
            self._save(
                {
                    "warning": "SOFTWARE TEST AUTHENTICATOR: keys in clear, tests and demo only",
                    "aaguid": secrets.token_hex(16),
                    "counter": 0,
                    "pin_protocols": list(pin_protocols),
                    "pin": None,
                    "retries": _MAX_RETRIES,
                    "touch": {"mode": "auto", "delay": 0.2},
                    "credentials": {},
                    "next": {},
                }
            )

    @property
    def waiting_for_touch(self) -> threading.Event:
        """Set while the device waits for a touch (after it sent UPNEEDED)."""
        return self._p.waiting_for_touch

    def replug(self) -> None:
        """Simulate unplugging and replugging: clears the wrong-PIN streak and the PIN token."""
        with self._p.lock:
            self._p.replug()

    @property
    def capabilities(self) -> int:
        return int(CAPABILITY.CBOR)

    @classmethod
    def list_devices(cls) -> Iterator[CtapDevice]:
        """A file-backed device is never discovered: open it by path."""
        return iter(())

    def set_touch(self, mode: str, delay: float = 0.2) -> None:
        """Choose how the simulated user answers touch requests."""
        if mode not in _TOUCH_MODES:
            raise ValueError(f"touch mode must be one of {_TOUCH_MODES}")
        self._update(touch={"mode": mode, "delay": delay})

    def tamper_next(
        self,
        *,
        counter: int | None = None,
        rp_id: str | None = None,
        clear_up: bool = False,
        clear_uv: bool = False,
        corrupt_signature: bool = False,
    ) -> None:
        """Bend the next assertion that collects a touch: its signCount, rp id hash, flags or
        signature."""
        self._update(
            next={
                "counter": counter,
                "rp_id": rp_id,
                "clear_up": clear_up,
                "clear_uv": clear_uv,
                "corrupt_signature": corrupt_signature,
            }
        )

    def call(
        self,
        cmd: int,
        data: bytes = b"",
        event: threading.Event | None = None,
        on_keepalive: Callable[[STATUS], None] | None = None,
    ) -> bytes:
        """Run one CTAPHID command; only CBOR is spoken."""
        if cmd != CTAPHID.CBOR:
            raise CtapError(ERR.INVALID_COMMAND)
        with self._p.lock:
            try:
                handlers: dict[int, Callable[..., Any]] = {
                    0x01: self._make_credential,
                    0x02: self._get_assertion,
                    0x04: self._get_info,
                    0x06: self._client_pin,
                }
                handler = handlers.get(data[0]) if data else None
                if handler is None:
                    raise _Fail(ERR.INVALID_COMMAND)
                try:
                    params = cbor.decode(data[1:]) if len(data) > 1 else {}
                except (ValueError, IndexError, struct.error) as exc:
                    raise _Fail(ERR.INVALID_CBOR) from exc
                if not isinstance(params, Mapping):
                    raise _Fail(ERR.CBOR_UNEXPECTED_TYPE)
                state = json.loads(self.path.read_text())
                result = handler(state, params, event, on_keepalive)
                self._save(state)
                return b"\0" + (cbor.encode(result) if result else b"")
            except _Fail as fail:
                return bytes([fail.status])
            except (KeyError, TypeError, AttributeError):
                return bytes([ERR.INVALID_PARAMETER])  # a malformed request

    # --- state ---------------------------------------------------------------------------

    def _save(self, state: dict[str, Any]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(state, fh, indent=1)
        os.replace(tmp, self.path)

    def _update(self, **changes: object) -> None:
        with self._p.lock:
            self._save(json.loads(self.path.read_text()) | changes)

    def _collect_touch(
        self, state: dict[str, Any], event: threading.Event | None, keepalive: object
    ) -> None:
        mode, delay = state["touch"]["mode"], float(state["touch"]["delay"])
        self._p.waiting_for_touch.set()
        try:
            if callable(keepalive):
                keepalive(STATUS.UPNEEDED)
            if mode == "refuse":
                raise _Fail(ERR.OPERATION_DENIED)
            wait = delay if mode in ("auto", "timeout") else _CANCEL_WAIT_CAP
            if event is not None and event.wait(wait):
                raise _Fail(ERR.KEEPALIVE_CANCEL)
            if event is None:
                threading.Event().wait(wait)
            if mode != "auto":
                raise _Fail(ERR.USER_ACTION_TIMEOUT)
        finally:
            self._p.waiting_for_touch.clear()

    def _pin_uv(self, state: dict[str, Any], params: Mapping[Any, Any], perm: int) -> bool:
        """Check pinUvAuthParam (keys 8/9 on makeCredential, 6/7 on getAssertion)."""
        auth_key, proto_key = (8, 9) if perm == _PERM_MC else (6, 7)
        if params.get(auth_key) is None:
            if state["pin"] is not None and perm == _PERM_MC:
                raise _Fail(ERR.PUAT_REQUIRED)
            return False
        crypto = _PinCrypto(params.get(proto_key), state["pin_protocols"])
        if state["pin"] is None:
            raise _Fail(ERR.PIN_NOT_SET)
        rp_ok = self._p.token_rp in (None, params[1] if perm == _PERM_GA else params[2].get("id"))
        if not self._p.token_perms & perm or not rp_ok:
            raise _Fail(ERR.PIN_AUTH_INVALID)
        crypto.check(self._p.token, params[1 if perm == _PERM_MC else 2], params[auth_key])
        return True

    # --- commands ------------------------------------------------------------------------

    def _get_info(self, state: dict[str, Any], *_: object) -> dict[int, Any]:
        options = {"rk": False, "up": True, "clientPin": state["pin"] is not None}
        return {
            1: ["FIDO_2_0", "FIDO_2_1"],
            2: ["hmac-secret"],
            3: bytes.fromhex(state["aaguid"]),
            4: options | {"pinUvAuthToken": True},
            5: 1200,
            6: state["pin_protocols"],
        }

    def _make_credential(
        self, state: dict[str, Any], p: Mapping[Any, Any], event: Any, keepalive: object
    ) -> dict[int, Any]:
        if not all(k in p for k in (1, 2, 3, 4)):
            raise _Fail(ERR.MISSING_PARAMETER)
        if not any(kp.get("alg") == -7 for kp in p[4]):
            raise _Fail(ERR.UNSUPPORTED_ALGORITHM)
        if p.get(7, {}).get("rk") or p.get(7, {}).get("uv"):
            raise _Fail(ERR.UNSUPPORTED_OPTION)
        uv = self._pin_uv(state, p, _PERM_MC)
        rp_hash = _sha256(p[2]["id"].encode())
        creds = state["credentials"]
        excluded = any(
            creds.get(d["id"].hex(), {}).get("rp_id_hash") == rp_hash.hex() for d in p.get(5, [])
        )
        self._collect_touch(state, event, keepalive)
        if excluded:
            raise _Fail(ERR.CREDENTIAL_EXCLUDED)
        key = ec.generate_private_key(ec.SECP256R1())
        cred_id = secrets.token_bytes(32)
        with_hmac = p.get(6, {}).get("hmac-secret") is True
        creds[cred_id.hex()] = {
            "rp_id_hash": rp_hash.hex(),
            "key_pem": key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode(),
            "cred_random": secrets.token_hex(64) if with_hmac else None,
        }
        flags = _UP | _AT | (_UV if uv else 0) | (_ED if with_hmac else 0)
        auth_data = (
            rp_hash
            + struct.pack(">BI", flags, state["counter"])
            + bytes.fromhex(state["aaguid"])
            + struct.pack(">H", len(cred_id))
            + cred_id
            + cbor.encode(_cose(key, -7))
            + (cbor.encode({"hmac-secret": True}) if with_hmac else b"")
        )
        return {1: "none", 2: auth_data, 3: {}}

    def _get_assertion(
        self, state: dict[str, Any], p: Mapping[Any, Any], event: Any, keepalive: object
    ) -> dict[int, Any]:
        if 1 not in p or 2 not in p:
            raise _Fail(ERR.MISSING_PARAMETER)
        options = p.get(5, {})
        if options.get("rk") or options.get("uv"):
            raise _Fail(ERR.UNSUPPORTED_OPTION)
        up = options.get("up", True) is not False
        uv = self._pin_uv(state, p, _PERM_GA)
        rp_hash = _sha256(p[1].encode())
        found = [
            (d["id"], state["credentials"][d["id"].hex()])
            for d in p.get(3, [])
            if state["credentials"].get(d["id"].hex(), {}).get("rp_id_hash") == rp_hash.hex()
        ]
        if not found:
            raise _Fail(ERR.NO_CREDENTIALS)
        cred_id, cred = found[0]
        if up:
            self._collect_touch(state, event, keepalive)
        ext = self._hmac_secret(state, p.get(4, {}).get("hmac-secret"), cred, uv) if up else None
        state["counter"] += 1
        tamper = state["next"] if up else {}
        state["next"] = {} if up else state["next"]
        flags = (_UP if up and not tamper.get("clear_up") else 0) | (_ED if ext else 0)
        flags |= _UV if uv and not tamper.get("clear_uv") else 0
        counter = state["counter"] if tamper.get("counter") is None else tamper["counter"]
        if tamper.get("rp_id") is not None:
            rp_hash = _sha256(tamper["rp_id"].encode())
        auth_data = rp_hash + struct.pack(">BI", flags, counter)
        auth_data += cbor.encode({"hmac-secret": ext}) if ext else b""
        key = serialization.load_pem_private_key(cred["key_pem"].encode(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)  # noqa: S101 (we wrote it)
        signed = auth_data + p[2] + (b"tampered" if tamper.get("corrupt_signature") else b"")
        signature = key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return {1: {"id": cred_id, "type": "public-key"}, 2: auth_data, 3: signature}

    def _hmac_secret(
        self, state: dict[str, Any], given: object, cred: dict[str, Any], uv: bool
    ) -> bytes | None:
        if not isinstance(given, Mapping) or cred["cred_random"] is None:
            return None
        crypto = _PinCrypto(given.get(4, 1), state["pin_protocols"])
        shared = crypto.shared_secret(self._p.ka_key, given.get(1))
        salt_enc = given[2]
        crypto.check(shared, salt_enc, given.get(3))
        salts = crypto.decrypt(shared, salt_enc)
        if len(salts) not in (32, 64):
            raise _Fail(ERR.INVALID_LENGTH)
        both = bytes.fromhex(cred["cred_random"])  # CredRandomWithoutUV || CredRandomWithUV
        key = both[32:] if uv else both[:32]
        out = b"".join(
            hmac.new(key, salts[i : i + 32], hashlib.sha256).digest()
            for i in range(0, len(salts), 32)
        )
        return crypto.encrypt(shared, out)

    def _client_pin(self, state: dict[str, Any], p: Mapping[Any, Any], *_: object) -> Any:
        sub = p.get(2)
        if sub == 0x01:
            return {3: state["retries"], 4: False}
        crypto = _PinCrypto(p.get(1), state["pin_protocols"])
        if sub == 0x02:
            return {1: _cose(self._p.ka_key, -25)}
        if sub == 0x03:
            if state["pin"] is not None:
                raise _Fail(ERR.NOT_ALLOWED)
            shared = crypto.shared_secret(self._p.ka_key, p.get(3))
            crypto.check(shared, p[5], p.get(4))
            padded = crypto.decrypt(shared, p[5])
            pin = padded.split(b"\0", 1)[0]
            if len(padded) < 64 or len(pin.decode(errors="replace")) < 4:
                raise _Fail(ERR.PIN_POLICY_VIOLATION)
            state["pin"], state["retries"] = _sha256(pin)[:16].hex(), _MAX_RETRIES
            return None
        if sub not in (0x05, 0x09):
            raise _Fail(ERR.INVALID_SUBCOMMAND)
        if state["pin"] is None:
            raise _Fail(ERR.PIN_NOT_SET)
        if state["retries"] == 0:
            raise _Fail(ERR.PIN_BLOCKED)
        if self._p.pin_fails >= 3:
            raise _Fail(ERR.PIN_AUTH_BLOCKED)
        perms = p.get(9, 0) if sub == 0x09 else _PERM_MC | _PERM_GA
        if not perms:
            raise _Fail(ERR.MISSING_PARAMETER)
        shared = crypto.shared_secret(self._p.ka_key, p.get(3))
        state["retries"] -= 1
        if not hmac.compare_digest(
            crypto.decrypt(shared, p.get(6))[:16], bytes.fromhex(state["pin"])
        ):
            self._p.ka_key = ec.generate_private_key(ec.SECP256R1())
            self._p.pin_fails += 1
            self._save(state)
            if state["retries"] == 0:
                raise _Fail(ERR.PIN_BLOCKED)
            raise _Fail(ERR.PIN_AUTH_BLOCKED if self._p.pin_fails >= 3 else ERR.PIN_INVALID)
        state["retries"], self._p.pin_fails = _MAX_RETRIES, 0
        self._p.token = secrets.token_bytes(32)
        self._p.token_perms, self._p.token_rp = perms, p.get(10) if sub == 0x09 else None
        return {2: crypto.encrypt(shared, self._p.token)}
