"""The PKCS#11 adapter: the only module that calls python-pkcs11.

:class:`TokenKey` implements the ``KeyWrapper``, ``RandomSource`` and ``GenerationAnchor``
ports over one long-lived, logged-in session. Every token call goes through one
``threading.Lock``: SoftHSM2 is not safe with sessions used from several threads at once
(docs/threat-model.md component facts). Library errors are translated here, as they come in.
"""

from __future__ import annotations

import glob
import hashlib
import os
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol, TypeVar, cast

import pkcs11
from pkcs11 import (
    Attribute,
    GCMParams,
    KeyType,
    Mechanism,
    MechanismFlag,
    ObjectClass,
    SecretKey,
    Session,
    Token,
    TokenFlag,
)
from pkcs11 import exceptions as pkerr

from vaultd.errors import (
    AuditTampered,
    HsmError,
    HsmKeyUnsafe,
    HsmModuleLoadFailed,
    HsmModuleRefused,
    HsmPinFinalTry,
    HsmPinIncorrect,
    HsmPinLocked,
    KeyUsageExhausted,
    RecordCorrupt,
    Sealed,
    StoreRollback,
    TokenAmbiguous,
    TokenNotFound,
)

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as Pkcs11Lib

DEFAULT_MODULE_ALLOWLIST: Final[tuple[str, ...]] = (
    # SoftHSM2 (tests and demo only)
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
    # YubiKey PIV (ykcs11)
    "/usr/lib/x86_64-linux-gnu/libykcs11.so*",
    "/usr/lib/aarch64-linux-gnu/libykcs11.so*",
    "/usr/lib64/libykcs11.so*",
    "/usr/local/lib/libykcs11.so*",
    "/usr/local/lib/libykcs11.dylib",
    "/opt/homebrew/lib/libykcs11.dylib",
    # OpenSC
    "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
    "/usr/lib/x86_64-linux-gnu/pkcs11/opensc-pkcs11.so",
    "/usr/lib/aarch64-linux-gnu/opensc-pkcs11.so",
    "/usr/lib/aarch64-linux-gnu/pkcs11/opensc-pkcs11.so",
    "/usr/lib64/opensc-pkcs11.so",
    "/usr/lib64/pkcs11/opensc-pkcs11.so",
    "/Library/OpenSC/lib/opensc-pkcs11.so",
    # YubiHSM 2
    "/usr/lib/x86_64-linux-gnu/pkcs11/yubihsm_pkcs11.so",
    "/usr/lib/aarch64-linux-gnu/pkcs11/yubihsm_pkcs11.so",
    "/usr/lib64/pkcs11/yubihsm_pkcs11.so",
    "/usr/local/lib/pkcs11/yubihsm_pkcs11.dylib",
)
"""Modules vaultd loads without extra configuration; entries may end in a ``*`` glob."""

GENERATION_LABEL: Final = "vaultd-generation"
ENCRYPTIONS_LABEL: Final = "vaultd-encryptions"
"""Label prefix of the per-key encryption counters in the token (:func:`encryptions_label`)."""
ENCRYPTION_LIMIT: Final = 1 << 30
"""Encryptions allowed under one key: well under the 2^32 bound for random 96-bit GCM IVs."""
ENCRYPTION_BLOCK: Final = 4096
"""Encryptions reserved in the token at a time; a crash skips at most this many counts."""
IV_LEN: Final = 12
TAG_LEN: Final = 16
MAC_LEN: Final = 32
_KEY_BYTES: Final = 32
_GENERATION_BYTES: Final = 8
_COUNTER_BYTES: Final = 8
_ID_BYTES: Final = 16

_DEVICE_ERRORS: Final = (
    pkerr.DeviceRemoved,
    pkerr.DeviceError,
    pkerr.DeviceMemory,
    pkerr.TokenNotPresent,
    pkerr.TokenNotRecognised,
    pkerr.SessionHandleInvalid,
    pkerr.SessionClosed,
    pkerr.UserNotLoggedIn,
    pkerr.KeyHandleInvalid,
    pkerr.ObjectHandleInvalid,
    pkerr.GeneralError,
)
_CAPABILITIES: Final = (
    Attribute.ENCRYPT,
    Attribute.DECRYPT,
    Attribute.WRAP,
    Attribute.UNWRAP,
    Attribute.SIGN,
    Attribute.VERIFY,
    Attribute.DERIVE,
)
_RESEAL_HINT: Final = "re-insert the token and run `vaultd unlock`"
_REPLACE_KEY_HINT: Final = (
    "set pkcs11.key_label to a new label, move the store file aside, run `vaultd init`, then "
    "`vaultd add` each key pair and `vaultd mfa` each seed again (vaultd cannot export them; "
    "make new IAM keys if needed)"
)


@dataclass(frozen=True, slots=True)
class _KeySpec:
    """What a vaultd key in the token must look like."""

    role: str
    key_type: KeyType
    usage: tuple[Attribute, ...]

    def policy(self) -> tuple[tuple[Attribute, object], ...]:
        """Required attribute values, in the order they are checked (and reported)."""
        return (
            (Attribute.KEY_TYPE, self.key_type),
            (Attribute.VALUE_LEN, _KEY_BYTES),
            (Attribute.TOKEN, True),
            (Attribute.PRIVATE, True),
            (Attribute.SENSITIVE, True),
            (Attribute.EXTRACTABLE, False),
            (Attribute.ALWAYS_SENSITIVE, True),
            (Attribute.NEVER_EXTRACTABLE, True),
            *((cap, cap in self.usage) for cap in _CAPABILITIES),
        )

    def template(self) -> dict[Attribute, object]:
        """Generation template: everything in :meth:`policy` that a template may set."""
        skip = {Attribute.KEY_TYPE, Attribute.VALUE_LEN}
        skip |= {Attribute.ALWAYS_SENSITIVE, Attribute.NEVER_EXTRACTABLE}
        return {attr: value for attr, value in self.policy() if attr not in skip}


_KEK: Final = _KeySpec("key-encryption key", KeyType.AES, (Attribute.ENCRYPT, Attribute.DECRYPT))
_MAC: Final = _KeySpec("audit MAC key", KeyType.GENERIC_SECRET, (Attribute.SIGN, Attribute.VERIFY))


class _KeyObject(Protocol):
    def __getitem__(self, key: Attribute) -> Any: ...


class _AeadKey(_KeyObject, Protocol):
    """The KEK as used here (python-pkcs11 mixes these in for an ENCRYPT/DECRYPT key)."""

    def encrypt(
        self, data: bytes, *, mechanism: Mechanism, mechanism_param: GCMParams
    ) -> bytes: ...

    def decrypt(
        self, data: bytes, *, mechanism: Mechanism, mechanism_param: GCMParams
    ) -> bytes: ...


class _MacKey(_KeyObject, Protocol):
    """The audit key as used here (python-pkcs11 mixes these in for a SIGN/VERIFY key)."""

    def sign(self, data: bytes, *, mechanism: Mechanism) -> bytes: ...

    def verify(self, data: bytes, signature: bytes, *, mechanism: Mechanism) -> bool: ...


@dataclass(slots=True)
class _Usage:
    """Encryptions under the KEK: ``used`` counted so far, ``reserved`` written to the token.

    Both stay 0 until the first reservation reads the token's counter.
    """

    used: int = 0
    reserved: int = 0


@dataclass(slots=True)
class _Open:
    """The live handles of an unsealed vault."""

    session: Session
    kek: _AeadKey
    mac_key: _MacKey
    usage: _Usage = field(default_factory=_Usage)


def check_module_path(path: str, allowlist: Sequence[str]) -> str:
    """Return the real path of ``path`` if it is a safe, allowlisted PKCS#11 module
    (docs/threat-model.md T25).

    The real path must equal the real path of an allowlist entry (entries may end in ``*``), and
    neither the file nor its directory may be writable by group or others or owned by another
    non-root uid. Load the returned path, not ``path``. Raises :class:`HsmModuleRefused`.
    """
    real = os.path.realpath(path)
    allowed = {os.path.realpath(p) for entry in allowlist for p in _expand(entry)}
    if real not in allowed:
        raise HsmModuleRefused(
            f"PKCS#11 module {path} (resolves to {real}) is not on the module allowlist; "
            "use an allowlisted module or add its path to pkcs11.module_allowlist"
        )
    for target in (real, os.path.dirname(real)):
        try:
            st = os.stat(target)
        except OSError as exc:
            raise HsmModuleRefused(f"PKCS#11 module {path}: cannot stat {target}: {exc}") from exc
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise HsmModuleRefused(
                f"PKCS#11 module {path}: {target} is writable by group or others; "
                f"run `chmod go-w {target}`"
            )
        if st.st_uid not in (0, os.getuid()):
            raise HsmModuleRefused(
                f"PKCS#11 module {path}: {target} is owned by uid {st.st_uid}; "
                "it must belong to root or to you"
            )
    return real


def _expand(entry: str) -> list[str]:
    return glob.glob(entry) if entry.endswith("*") else [entry]


class _Handles(Protocol):
    @property
    def session(self) -> Session: ...


_S = TypeVar("_S", bound=_Handles)


class _TokenSession(Generic[_S]):
    """The live handles of a logged-in token behind one lock; a close or a device failure drops
    them (seals), and every later call raises :class:`Sealed`."""

    def __init__(self, state: _S) -> None:
        self._state: _S | None = state
        self._lock = threading.Lock()
        self._touch_said: tuple[Callable[[], None], float] | None = None

    def announce_touch(self, say: Callable[[], None], *, after: float) -> None:
        """Call ``say`` (from another thread) whenever a record open has waited ``after``
        seconds, which on a PIV card is a key waiting for its touch: ykcs11 just blocks."""
        self._touch_said = (say, after)

    @contextmanager
    def _touch_watch(self) -> Iterator[None]:
        """Around one record open: :meth:`announce_touch`'s ``say`` once it is late."""
        if self._touch_said is None:
            yield
            return
        timer = threading.Timer(self._touch_said[1], self._touch_said[0])
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    @property
    def sealed(self) -> bool:
        """True once closed, by :meth:`close` or by a device failure."""
        return self._state is None

    def close(self) -> None:
        """Log out and close the session (seal); later calls raise :class:`Sealed`."""
        with self._lock:
            state, self._state = self._state, None
        if state is not None:
            _close_quietly(state.session)

    @contextmanager
    def _use(self, what: str) -> Iterator[_S]:
        """Hold the token lock for one operation; a device failure seals the vault."""
        with self._lock:
            state = self._state
            if state is None:
                raise Sealed(
                    "the vault is sealed (locked, or the token failed); run `vaultd unlock`, "
                    "after re-inserting the token if it was removed"
                )
            try:
                yield state
            except pkerr.PKCS11Error as exc:
                if _is_device_error(exc):
                    self._state = None
                    _close_quietly(state.session)
                raise _translate(exc, what) from exc


class TokenKey(_TokenSession[_Open]):
    """A logged-in PKCS#11 token holding the vault's AES-256 key and audit HMAC key.

    Build it with :meth:`open`. Any device failure closes it; after :meth:`close` or such a
    failure every call raises :class:`Sealed`.
    """

    def __init__(
        self,
        *,
        lib: Pkcs11Lib,
        token: Token,
        state: _Open,
        module_path: str,
        key_label: str,
        key_id: str,
    ) -> None:
        """Internal: use :meth:`open`."""
        super().__init__(state)
        self._lib = lib
        self._token = token
        self._module_path = module_path
        self._key_label = key_label
        self._key_id = key_id

    @classmethod
    def open(
        cls,
        module_path: str,
        token_label: str,
        key_label: str,
        pin: str | bytearray,
        *,
        create_key: bool = False,
        confirm_final_try: bool = False,
    ) -> TokenKey:
        """Load the module, find the token by label, log in once and check (or create) the keys.

        ``create_key=True`` (``vaultd init``) generates the keys that are absent. The token's
        PIN flags are read before ``C_Login``: a token at its final PIN try raises
        :class:`HsmPinFinalTry` without logging in unless ``confirm_final_try`` says the person
        typed a confirmation (docs/threat-model.md T9). Also raises :class:`TokenNotFound`,
        :class:`TokenAmbiguous`, :class:`HsmPinLocked`, :class:`HsmPinIncorrect` (with the
        token's PIN flags read after the failure), :class:`HsmKeyUnsafe` or :class:`Sealed`.
        The login is never retried. python-pkcs11 needs the PIN as ``str``, so a ``bytearray``
        PIN is decoded into a short-lived copy.
        """
        lib, token, session = login_session(
            module_path, token_label, pin, confirm_final_try=confirm_final_try
        )
        try:
            with _translated("checking the keys"):
                kek = _find_key(session, key_label, _KEK, create_key)
                mac_key = _find_key(session, f"{key_label}-audit", _MAC, create_key)
                key_id = _derive_key_id(token.serial, key_label, kek[Attribute.ID])
        except BaseException:
            _close_quietly(session)
            raise
        # The attribute check above guarantees the capabilities these views rely on.
        state = _Open(session=session, kek=cast(_AeadKey, kek), mac_key=cast(_MacKey, mac_key))
        return cls(
            lib=lib,
            token=token,
            state=state,
            module_path=module_path,
            key_label=key_label,
            key_id=key_id,
        )

    @property
    def key_id(self) -> str:
        """32 hex chars of SHA-256 over token serial, key label and the key's CKA_ID (not secret).

        ``vaultd init`` sets a random CKA_ID, so a key regenerated under the same label gets a
        new id.
        """
        return self._key_id

    def random(self, n: int) -> bytes:
        """``n`` random bytes from the token's generator (C_GenerateRandom)."""
        if n < 0:
            raise ValueError("n must not be negative")
        if n == 0:
            return b""
        with self._use("generating random bytes") as st:
            return st.session.generate_random(n * 8)

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """AES-256-GCM under the token key: ciphertext with the 16-byte tag appended.

        Each call is counted against :data:`ENCRYPTION_LIMIT` in the token (docs/threat-model.md
        T8); past it, or when the token's counter is unreadable, raises :class:`KeyUsageExhausted`
        and seals nothing. A failure to write the counter refuses the encryption too.
        """
        if len(iv) != IV_LEN:
            raise ValueError(f"the AES-GCM IV must be {IV_LEN} bytes, got {len(iv)}")
        params = GCMParams(bytes(iv), bytes(aad), TAG_LEN * 8)
        with self._use("encrypting") as st:
            self._count_encryption(st)
            return st.kek.encrypt(
                bytes(plaintext), mechanism=Mechanism.AES_GCM, mechanism_param=params
            )

    def decrypt(self, iv: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        """Open AES-256-GCM ``ciphertext`` (tag appended); a mismatch -> :class:`RecordCorrupt`."""
        if len(iv) != IV_LEN or len(ciphertext) < TAG_LEN:
            raise RecordCorrupt(
                f"a sealed record is malformed (IV of {len(iv)} bytes, ciphertext of "
                f"{len(ciphertext)} bytes); restore it from a backup or add it again"
            )
        params = GCMParams(bytes(iv), bytes(aad), TAG_LEN * 8)
        with self._use("decrypting") as st:
            try:
                return st.kek.decrypt(
                    bytes(ciphertext), mechanism=Mechanism.AES_GCM, mechanism_param=params
                )
            except (
                pkerr.GeneralError,
                pkerr.EncryptedDataInvalid,
                pkerr.EncryptedDataLenRange,
            ) as exc:
                raise RecordCorrupt(
                    "a sealed record failed authentication (its IV, ciphertext, tag or context "
                    "does not match); restore it from a backup or add it again"
                ) from exc

    def mac(self, data: bytes) -> bytes:
        """HMAC-SHA256 of ``data`` under the token's audit key (32 bytes)."""
        with self._use("computing an audit MAC") as st:
            return st.mac_key.sign(bytes(data), mechanism=Mechanism.SHA256_HMAC)

    def mac_verify(self, data: bytes, tag: bytes) -> None:
        """Check an audit MAC inside the token; raise :class:`AuditTampered` on a mismatch."""
        if len(tag) != MAC_LEN:
            raise AuditTampered(_TAMPERED)
        with self._use("verifying an audit MAC") as st:
            ok = st.mac_key.verify(bytes(data), bytes(tag), mechanism=Mechanism.SHA256_HMAC)
        if not ok:
            raise AuditTampered(_TAMPERED)

    def read_generation(self) -> int:
        """The highest store generation anchored in the token (0 when none)."""
        with self._use("reading the store generation") as st:
            return read_anchor(st.session)

    def advance_generation(self, value: int) -> None:
        """Anchor ``value``, which must exceed the current generation, and drop older anchors.

        SoftHSM2 cannot rewrite CKA_VALUE, so the new object is created before the old ones are
        destroyed: a crash in between leaves two, never none.
        """
        if value >= 1 << (8 * _GENERATION_BYTES):
            raise ValueError(f"generation {value} is out of range")
        with self._use("advancing the store generation") as st:
            anchor_generation(st.session, value)

    def inspect(self) -> dict[str, object]:
        """Non-secret facts for ``vaultd doctor``: module, token, flags, key attributes and usage.

        ``encryptions`` counts the key's encryptions, including counts skipped by restarts
        (never fewer than were made); ``encryption_limit`` is where sealing stops.
        """
        with self._use("inspecting the token") as st:
            flags = self._token.slot.get_token().flags
            usage = st.usage
            if usage.reserved:
                encryptions = usage.used
            else:
                encryptions = max((v for v, _ in self._counters(st.session)), default=0)
            return {
                "module": self._module_path,
                "library": self._lib.library_description,
                "library_manufacturer": self._lib.manufacturer_id,
                "token_label": self._token.label,
                "token_serial": self._token.serial.decode("ascii", "replace"),
                "token_model": self._token.model,
                "token_manufacturer": self._token.manufacturer_id,
                "token_flags": sorted(f.name for f in TokenFlag if f.name and f in flags),
                "key_label": self._key_label,
                "key_id": self._key_id,
                "key_attributes": _describe(st.kek, _KEK),
                "audit_key_attributes": _describe(st.mac_key, _MAC),
                "encryptions": encryptions,
                "encryption_limit": ENCRYPTION_LIMIT,
            }

    def _count_encryption(self, st: _Open) -> None:
        """Count one encryption, first reserving a new block in the token when this one is used.

        The block starts at the token's highest counter (never lower than this session's), so
        a crash only skips counts. The new counter object is created before the old ones are
        destroyed (SoftHSM2 cannot rewrite CKA_VALUE): a crash in between leaves two.
        """
        usage = st.usage
        if usage.used >= usage.reserved:
            found = self._counters(st.session)
            start = max((v for v, _ in found), default=0)
            start = max(start, usage.reserved)
            if start >= ENCRYPTION_LIMIT:
                raise KeyUsageExhausted(
                    f"key {self._key_label!r} has sealed 2^30 records, vaultd's limit per key "
                    "for AES-GCM with random IVs; it opens its records but seals no more. "
                    f"Replace it: {_REPLACE_KEY_HINT}",
                    key_label=self._key_label,
                )
            end = min(start + ENCRYPTION_BLOCK, ENCRYPTION_LIMIT)
            st.session.create_object(
                {
                    Attribute.CLASS: ObjectClass.DATA,
                    Attribute.TOKEN: True,
                    Attribute.PRIVATE: True,
                    Attribute.LABEL: encryptions_label(self._key_id),
                    Attribute.APPLICATION: "vaultd",
                    Attribute.VALUE: end.to_bytes(_COUNTER_BYTES, "big"),
                }
            )
            for _, obj in found:
                obj.destroy()
            usage.used, usage.reserved = start, end
        usage.used += 1

    def _counters(self, session: Session) -> list[tuple[int, pkcs11.Object]]:
        """The key's counter objects with their values; a malformed one refuses sealing."""
        found = []
        for obj in session.get_objects({Attribute.LABEL: encryptions_label(self._key_id)}):
            raw = obj[Attribute.VALUE] if obj[Attribute.CLASS] == ObjectClass.DATA else None
            if not isinstance(raw, bytes) or len(raw) != _COUNTER_BYTES:
                raise KeyUsageExhausted(
                    f"the encryption counter of key {self._key_label!r} in the token is corrupt "
                    f"(not a data object of {_COUNTER_BYTES} bytes): HSM/token corruption. vaultd "
                    "refuses to seal rather than reset it; records still open. Restore the "
                    f"token from a backup, or replace the key: {_REPLACE_KEY_HINT}",
                    key_label=self._key_label,
                    corrupt=True,
                )
            found.append((int.from_bytes(raw, "big"), obj))
        return found


_TAMPERED: Final = "an audit record's MAC does not match; the audit log was altered"


def _pin_text(pin: str | bytearray) -> str:
    if isinstance(pin, str):
        return pin
    try:
        return pin.decode("utf-8")
    except UnicodeDecodeError:
        raise HsmPinIncorrect("the PIN is not valid UTF-8; check pin_source") from None


def _is_device_error(exc: pkerr.PKCS11Error) -> bool:
    # An unknown return value, or "not initialized", arrives as a bare PKCS11Error.
    return isinstance(exc, _DEVICE_ERRORS) or type(exc) is pkerr.PKCS11Error


def _translate(exc: pkerr.PKCS11Error, what: str) -> HsmError:
    name = type(exc).__name__
    if _is_device_error(exc):
        return Sealed(f"the token failed while {what} ({name}); {_RESEAL_HINT}")
    return HsmError(f"the token refused {what} ({name}); run `vaultd doctor`")


@contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except pkerr.PKCS11Error as exc:
        raise _translate(exc, what) from exc


def load_module(module_path: str) -> Pkcs11Lib:
    """The PKCS#11 library at ``module_path``; ``HsmModuleLoadFailed`` (not ``SEALED``) when
    it cannot be loaded."""
    try:
        return pkcs11.lib(module_path)
    except pkerr.PKCS11Error as exc:
        raise HsmModuleLoadFailed(
            f"could not load PKCS#11 module {module_path} ({type(exc).__name__}: {exc}); set "
            "[pkcs11] module to an installed PKCS#11 library"
        ) from exc


def _softhsm_hint(module_path: str) -> str:
    """Where SoftHSM2 looked for tokens (``SOFTHSM2_CONF`` names its token directory); "" for
    other modules."""
    if "softhsm" not in os.path.basename(module_path).lower():
        return ""
    conf = os.environ.get("SOFTHSM2_CONF") or "unset, so /etc/softhsm/softhsm2.conf"
    return (
        f"; SoftHSM2 reads its token directory from SOFTHSM2_CONF ({conf}): set it as it was "
        "when the token was made"
    )


def _find_token(lib: Pkcs11Lib, label: str, module_path: str) -> Token:
    tokens = list(lib.get_tokens(token_label=label))
    if not tokens:
        present = sorted(t.label for t in lib.get_tokens() if t.label)  # "": an empty slot
        raise TokenNotFound(
            f"no token labelled {label!r} in {module_path} (present: "
            f"{', '.join(map(repr, present)) or 'none'}); insert it or fix pkcs11.token_label"
            f"{_softhsm_hint(module_path)}"
        )
    if len(tokens) > 1:
        raise TokenAmbiguous(
            f"{len(tokens)} tokens are labelled {label!r} in {module_path}; "
            "relabel one of them so the label is unique"
        )
    return tokens[0]


def _login(token: Token, pin_text: str, *, confirm_final_try: bool) -> Session:
    """Open the vault's session with at most one C_Login (none at an unconfirmed final try)."""
    label = token.label
    with _translated("logging in"):
        flags = token.flags
        if flags & TokenFlag.USER_PIN_LOCKED:
            raise HsmPinLocked(_locked_message(label))
        if flags & TokenFlag.USER_PIN_FINAL_TRY and not confirm_final_try:
            raise HsmPinFinalTry(
                f"token {label!r} is at its final PIN try: one more wrong PIN locks it, so no "
                "login was tried; check the PIN, then run `vaultd unlock` (or unlock in the "
                "TUI) and type back the words it shows to spend the final try"
            )
        try:
            return token.open(rw=True, user_pin=pin_text)
        except (pkerr.PinIncorrect, pkerr.PinLenRange, pkerr.PinInvalid) as exc:
            flags = _fresh_flags(token)
            if flags & TokenFlag.USER_PIN_LOCKED:
                raise HsmPinLocked(_locked_message(label)) from exc
            final = bool(flags & TokenFlag.USER_PIN_FINAL_TRY)
            low = bool(flags & TokenFlag.USER_PIN_COUNT_LOW)
            warning = (
                " One more wrong PIN locks the token."
                if final
                else " Few PIN attempts remain."
                if low
                else ""
            )
            raise HsmPinIncorrect(
                f"token {label!r} refused the PIN; check pin_source and unlock again.{warning}",
                count_low=low,
                final_try=final,
            ) from exc
        except pkerr.PinLocked as exc:
            raise HsmPinLocked(_locked_message(label)) from exc
        except pkerr.UserAlreadyLoggedIn as exc:
            raise HsmError(
                f"token {label!r} is already logged in by this process; run `vaultd lock` first"
            ) from exc


def _fresh_flags(token: Token) -> TokenFlag:
    try:
        return token.slot.get_token().flags
    except pkerr.PKCS11Error:
        return TokenFlag(0)


def _locked_message(label: str) -> str:
    return (
        f"the user PIN of token {label!r} is locked; reset it with the SO PIN using the "
        "token's admin tool, then run `vaultd unlock`"
    )


def _find_key(session: Session, label: str, spec: _KeySpec, create: bool) -> SecretKey:
    found = list(
        session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label})
    )
    if len(found) > 1:
        raise HsmKeyUnsafe(
            f"duplicate label: {len(found)} keys are labelled {label!r}; remove the extra "
            f"ones so the {spec.role} is unambiguous",
            attribute="duplicate",
        )
    if found:
        key = found[0]
    elif create:
        key = session.generate_key(
            spec.key_type,
            _KEY_BYTES * 8,
            id=session.generate_random(_ID_BYTES * 8),
            label=label,
            store=True,
            capabilities=MechanismFlag(0),
            template=spec.template(),
        )
    else:
        raise HsmKeyUnsafe(
            f"the {spec.role} {label!r} is not in the token; run `vaultd init` to create it",
            attribute="missing",
        )
    if not isinstance(key, SecretKey):
        raise HsmKeyUnsafe(f"{label!r} is not a secret key", attribute="CLASS")
    _check_key(key, label, spec)
    return key


def _check_key(key: SecretKey, label: str, spec: _KeySpec) -> None:
    for attr, expected in spec.policy():
        try:
            value = key[attr]
        except (pkerr.AttributeTypeInvalid, pkerr.AttributeSensitive) as exc:
            raise HsmKeyUnsafe(
                f"cannot read {attr.name} of the {spec.role} {label!r}; the key cannot be "
                "checked, so it is refused",
                attribute=attr.name,
            ) from exc
        if value != expected:
            raise HsmKeyUnsafe(
                f"the {spec.role} {label!r} has {attr.name}={_show(value)}, expected "
                f"{_show(expected)}; generate a new key with `vaultd init`",
                attribute=attr.name,
            )


def _describe(key: _KeyObject, spec: _KeySpec) -> dict[str, object]:
    return {attr.name: _show(key[attr]) for attr, _ in spec.policy()}


def _show(value: object) -> object:
    if isinstance(value, KeyType):
        return value.name
    return value


def _generations(session: Session) -> list[tuple[int, pkcs11.Object]]:
    found = []
    query = {Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: GENERATION_LABEL}
    for obj in session.get_objects(query):
        raw = obj[Attribute.VALUE]
        if len(raw) != _GENERATION_BYTES:
            raise HsmError(
                f"a {GENERATION_LABEL!r} object in the token holds {len(raw)} bytes, not "
                f"{_GENERATION_BYTES}; remove it with the token's admin tool"
            )
        found.append((int.from_bytes(raw, "big"), obj))
    return found


def read_anchor(session: Session) -> int:
    """The highest store generation anchored in the token's data objects (0 when none)."""
    return max((value for value, _ in _generations(session)), default=0)


def anchor_generation(session: Session, value: int) -> None:
    """Anchor ``value`` in a new data object, then drop the older ones (see
    :meth:`TokenKey.advance_generation`); ``StoreRollback`` unless ``value`` is higher."""
    found = _generations(session)
    current = max((v for v, _ in found), default=0)
    if value <= current:
        raise StoreRollback(
            f"refusing to move the store generation from {current} to {value}; the "
            "store is older than the token's record of it (restore the newest store)"
        )
    session.create_object(
        {
            Attribute.CLASS: ObjectClass.DATA,
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.LABEL: GENERATION_LABEL,
            Attribute.APPLICATION: "vaultd",
            Attribute.VALUE: value.to_bytes(_GENERATION_BYTES, "big"),
        }
    )
    for _, obj in found:
        obj.destroy()


def login_session(
    module_path: str, token_label: str, pin: str | bytearray, *, confirm_final_try: bool
) -> tuple[Pkcs11Lib, Token, Session]:
    """Load the module, find the token by label and log in once (see :meth:`TokenKey.open`)."""
    pin_text = _pin_text(pin)
    with _translated("loading the PKCS#11 module"):
        lib = load_module(module_path)
        token = _find_again(lib, token_label, module_path)
    return lib, token, _login(token, pin_text, confirm_final_try=confirm_final_try)


def _find_again(lib: Pkcs11Lib, label: str, module_path: str) -> Token:
    """:func:`_find_token`, once more after ``C_Finalize``/``C_Initialize`` when the token is
    missing or its slot fails: a module keeps the slot list it read at load, so a token removed
    and put back is found only by a fresh one (`vaultd unlock` then works without a restart).
    Only called to open the vault key (no session of this module is live then)."""
    try:
        return _find_token(lib, label, module_path)
    except (TokenNotFound, Sealed):
        lib.reinitialize()
        return _find_token(lib, label, module_path)


def encryptions_label(key_id: str) -> str:
    """The label of the token data object counting encryptions under the key ``key_id``.

    Bound to the key id, so a key regenerated under the same label starts a new count.
    """
    return f"{ENCRYPTIONS_LABEL}:{key_id}"


def _derive_key_id(serial: bytes, label: str, cka_id: bytes) -> str:
    digest = hashlib.sha256(b"vaultd key id v1\x00")
    for part in (serial, label.encode("utf-8"), bytes(cka_id)):
        digest.update(len(part).to_bytes(4, "big") + part)
    return digest.hexdigest()[:32]


def _close_quietly(session: Session) -> None:
    # A failing device cannot be logged out; the module drops the login with the session.
    with suppress(pkerr.PKCS11Error):
        session.close()


@dataclass(frozen=True, slots=True)
class PinState:
    """The token's user-PIN flags, read without logging in."""

    count_low: bool
    final_try: bool
    locked: bool

    @property
    def unsafe_to_guess(self) -> bool:
        """Whether a wrong PIN was entered since the last good one (or worse): trying a PIN
        that may be wrong again could be the try that locks the token."""
        return self.count_low or self.final_try or self.locked

    def describe(self) -> str:
        """The flags in words."""
        if self.locked:
            return "the user PIN is LOCKED"
        if self.final_try:
            return "the next wrong PIN LOCKS the token (final try)"
        if self.count_low:
            return "a wrong PIN was entered since the last good login (few tries may remain)"
        return "no wrong PIN since the last good login"


def read_pin_state(module_path: str, token_label: str) -> PinState:
    """Load the module, find the token by label and read its PIN flags; no ``C_Login``."""
    with _translated("reading the token's PIN state"):
        flags = _find_token(load_module(module_path), token_label, module_path).flags
    return PinState(
        count_low=bool(flags & TokenFlag.USER_PIN_COUNT_LOW),
        final_try=bool(flags & TokenFlag.USER_PIN_FINAL_TRY),
        locked=bool(flags & TokenFlag.USER_PIN_LOCKED),
    )
