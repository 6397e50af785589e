"""Enrolment and touch ceremonies with CTAP2 authenticators, through python-fido2's ``Ctap2``.

These functions block: run them in a worker thread. They return raw results; checking an
assertion is :func:`vaultd.fido2.verify.verify_assertion`'s job, done by the caller, who also
persists the new signCount before releasing anything.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fido2 import cbor
from fido2.cose import CoseKey
from fido2.ctap import STATUS, CtapDevice, CtapError
from fido2.ctap2.base import AssertionResponse, Ctap2
from fido2.ctap2.pin import ClientPin, PinProtocol

from vaultd.core.ports import Clock
from vaultd.errors import (
    ApprovalTimeout,
    ApprovalUnavailable,
    Denied,
    Fido2NoDevice,
    Fido2PinAuthBlocked,
    Fido2PinBlocked,
    Fido2PinInvalid,
    Fido2PinRequired,
    Fido2Rejected,
    RecordExists,
    VaultError,
)
from vaultd.fido2.verify import EnrolledCredential, client_data_hash, select_credential

logger = logging.getLogger(__name__)

ERR = CtapError.ERR
_ES256 = -7
_HMAC_EXT = "hmac-secret"
_POLL = 0.05
_JOIN = 2.0


@dataclass(frozen=True, slots=True)
class AssertionResult:
    """A raw assertion: which credential answered, what it signed, and the hmac-secret output."""

    credential: EnrolledCredential
    auth_data: bytes
    signature: bytes
    client_data_hash: bytes
    hmac_output: bytes | None = None


def _ctap_error(exc: CtapError) -> VaultError:
    """The vaultd error for an authenticator status."""
    code = exc.code
    if code == ERR.PIN_AUTH_BLOCKED:
        return Fido2PinAuthBlocked(
            "three wrong PINs in a row: unplug and replug the authenticator, then try again"
        )
    if code == ERR.PIN_BLOCKED:
        return Fido2PinBlocked(
            "the authenticator PIN is blocked; only a reset unblocks it, and a reset wipes every "
            "credential on it (re-enrol afterwards)"
        )
    if code in (ERR.PUAT_REQUIRED, ERR.PIN_NOT_SET):
        return Fido2PinRequired("the authenticator needs its PIN (set one if it has none)")
    if code in (ERR.OPERATION_DENIED, ERR.KEEPALIVE_CANCEL):
        return Denied("the touch was refused or cancelled at the authenticator")
    if code in (ERR.USER_ACTION_TIMEOUT, ERR.ACTION_TIMEOUT):
        return ApprovalTimeout("the authenticator was not touched in time")
    if code == ERR.CREDENTIAL_EXCLUDED:
        return RecordExists("this authenticator is already enrolled; use another key")
    return ApprovalUnavailable(f"the authenticator failed ({code.name}); replug it and try again")


def _open(device: CtapDevice) -> Ctap2:
    try:
        return Ctap2(device)
    except ValueError as exc:
        raise ApprovalUnavailable(
            "this authenticator speaks only CTAP1/U2F; vaultd needs a FIDO2 (CTAP2) key"
        ) from exc


def _pin_auth(
    ctap: Ctap2, pin: str, permission: ClientPin.PERMISSION, rp_id: str, cdh: bytes
) -> tuple[bytes, int]:
    """pinUvAuthParam and protocol version for one command, from a fresh PIN token."""
    client_pin = ClientPin(ctap)
    try:
        token = client_pin.get_pin_token(pin, permission, rp_id)
    except CtapError as exc:
        if exc.code != ERR.PIN_INVALID:
            raise _ctap_error(exc) from exc
        left = client_pin.get_pin_retries()[0]
        raise Fido2PinInvalid(
            f"wrong authenticator PIN; {left} attempts left before it is blocked",
            attempts_remaining=left,
        ) from exc
    return client_pin.protocol.authenticate(token, cdh), client_pin.protocol.VERSION


# Long: one makeCredential call (nine CTAP2 arguments) and the checks of its answer.
def enroll(
    device: CtapDevice,
    *,
    name: str,
    rp_id: str = "vaultd",
    user_name: str,
    pin: str | None,
    hmac_secret: bool = True,
    exclude: Sequence[EnrolledCredential] = (),
    on_prompt: Callable[[], None] | None = None,
    cancel: threading.Event | None = None,
    clock: Clock | None = None,
) -> EnrolledCredential:
    """Make a new ES256 credential on ``device`` (one touch) and return its public facts.

    The PIN is needed when the device has one. Credentials in ``exclude`` must not be on the
    device already. ``hmac_secret`` asks for the extension; the result says if it was granted.
    """
    ctap = _open(device)
    cdh = client_data_hash(secrets.token_bytes(32), name, rp_id, kind="vaultd.enroll")
    pin_param: bytes | None = None
    pin_proto: int | None = None
    if ctap.info.options.get("clientPin"):
        if pin is None:
            raise Fido2PinRequired("the authenticator has a PIN: enter it to enrol")
        pin_param, pin_proto = _pin_auth(
            ctap, pin, ClientPin.PERMISSION.MAKE_CREDENTIAL, rp_id, cdh
        )
    want_hmac = hmac_secret and _HMAC_EXT in ctap.info.extensions
    try:
        made = ctap.make_credential(
            cdh,
            {"id": rp_id, "name": "vaultd"},
            {"id": secrets.token_bytes(16), "name": user_name},
            [{"type": "public-key", "alg": _ES256}],
            [{"type": "public-key", "id": c.credential_id} for c in exclude] or None,
            {_HMAC_EXT: True} if want_hmac else None,
            None,
            pin_param,
            pin_proto,
            event=cancel,
            on_keepalive=_keepalive(on_prompt),
        )
    except CtapError as exc:
        raise _ctap_error(exc) from exc
    auth = made.auth_data
    attested = auth.credential_data
    if (
        attested is None
        or auth.rp_id_hash != hashlib.sha256(rp_id.encode()).digest()
        or not auth.is_user_present()
        or attested.public_key.ALGORITHM != _ES256
    ):
        raise Fido2Rejected(
            "the authenticator returned an unusable credential (not ES256, wrong RP id or "
            "no touch); use another key",
            check="credential",
        )
    return EnrolledCredential(
        name=name,
        credential_id=bytes(attested.credential_id),
        public_key=cbor.encode(dict(attested.public_key)),
        sign_count=int(auth.counter),
        created=clock.now() if clock is not None else datetime.now(UTC),
        hmac_secret=bool((auth.extensions or {}).get(_HMAC_EXT)),
    )


def _keepalive(on_prompt: Callable[[], None] | None) -> Callable[[int], None]:
    """A keepalive handler that calls ``on_prompt`` once, at the first UPNEEDED."""
    lock = threading.Lock()
    prompted = False

    def handle(status: int) -> None:
        nonlocal prompted
        with lock:
            first = status == STATUS.UPNEEDED and not prompted
            prompted = prompted or first
        if first and on_prompt is not None:
            on_prompt()

    return handle


@dataclass(frozen=True, slots=True)
class _Candidate:
    ctap: Ctap2
    cred: EnrolledCredential


@dataclass(frozen=True, slots=True)
class _Request:
    """Everything one device's touch request needs."""

    candidate: _Candidate
    extensions: Mapping[str, Any] | None
    pin_param: bytes | None
    pin_proto: int | None
    hmac: tuple[PinProtocol, bytes] | None


def _candidates(
    devices: Sequence[CtapDevice],
    creds: Sequence[EnrolledCredential],
    *,
    rp_id: str,
    cdh: bytes,
    require_uv: bool,
    want_hmac: bool,
    cancel: threading.Event,
) -> list[_Candidate]:
    """Devices holding an enrolled credential, found without a touch (``up=false``)."""
    allow: list[Mapping[str, Any]] = [{"type": "public-key", "id": c.credential_id} for c in creds]
    found: list[_Candidate] = []
    for device in devices:
        try:
            ctap = Ctap2(device)
            probe = ctap.get_assertion(rp_id, cdh, allow, options={"up": False}, event=cancel)
        except CtapError as exc:
            if exc.code != ERR.NO_CREDENTIALS:
                logger.warning("FIDO2 device skipped: %s", exc)
            continue
        except (ValueError, OSError) as exc:
            logger.warning("FIDO2 device skipped (not a usable CTAP2 device): %s", exc)
            continue
        cred = select_credential(creds, bytes(probe.credential["id"]))
        if require_uv and not ctap.info.options.get("clientPin"):
            logger.warning("FIDO2 device skipped: user verification is required and it has no PIN")
        elif want_hmac and not (cred.hmac_secret and ctap.info.pin_uv_protocols):
            logger.warning("FIDO2 device skipped: its credential has no hmac-secret")
        else:
            found.append(_Candidate(ctap, cred))
    return found


def _prepare(
    cand: _Candidate,
    *,
    rp_id: str,
    cdh: bytes,
    require_uv: bool,
    pin: str | None,
    salt: bytes | None,
) -> _Request:
    pin_param: bytes | None = None
    pin_proto: int | None = None
    if require_uv:
        if pin is None:
            raise Fido2PinRequired("this profile requires the authenticator PIN: enter it")
        perm = ClientPin.PERMISSION.GET_ASSERTION
        pin_param, pin_proto = _pin_auth(cand.ctap, pin, perm, rp_id, cdh)
    if salt is None:
        return _Request(cand, None, pin_param, pin_proto, None)
    protocol = ClientPin(cand.ctap).protocol
    try:
        reply = cand.ctap.client_pin(protocol.VERSION, ClientPin.CMD.GET_KEY_AGREEMENT)
    except CtapError as exc:
        raise _ctap_error(exc) from exc
    key_agreement, shared = protocol.encapsulate(CoseKey(reply[ClientPin.RESULT.KEY_AGREEMENT]))
    salt_enc = protocol.encrypt(shared, salt)
    given: dict[int, Any] = {
        1: key_agreement,
        2: salt_enc,
        3: protocol.authenticate(shared, salt_enc),
    }
    given[4] = protocol.VERSION
    return _Request(cand, {_HMAC_EXT: given}, pin_param, pin_proto, (protocol, shared))


def assert_presence(
    devices: Sequence[CtapDevice],
    creds: Sequence[EnrolledCredential],
    *,
    challenge: bytes,
    approval_id: str,
    rp_id: str,
    require_uv: bool,
    pin: str | None,
    on_prompt: Callable[[], None],
    cancel: threading.Event,
    timeout: float,
    hmac_salt: bytes | None = None,
) -> AssertionResult:
    """Ask every present device holding an enrolled credential for a touch; the first wins.

    Devices are probed without a touch first; with ``require_uv`` only the first device found
    is used, so a PIN never reaches a second key. ``on_prompt`` runs (in a device thread) only
    once a device reports UPNEEDED. Setting ``cancel`` gives ``Denied``; ``timeout`` seconds
    give ``ApprovalTimeout``; no device with an enrolled credential gives
    ``ApprovalUnavailable``. ``hmac_salt`` (32 bytes) asks for the hmac-secret output.
    """
    if hmac_salt is not None and len(hmac_salt) != 32:
        raise ValueError("hmac_salt must be 32 bytes")
    deadline = time.monotonic() + timeout
    cdh = client_data_hash(challenge, approval_id, rp_id)
    found = _candidates(
        devices,
        creds,
        rp_id=rp_id,
        cdh=cdh,
        require_uv=require_uv,
        want_hmac=hmac_salt is not None,
        cancel=cancel,
    )
    if not found:
        raise Fido2NoDevice(
            "no connected FIDO2 authenticator holds an enrolled credential that can do this; "
            "plug in an enrolled key (with a PIN set if the profile requires verification)"
        )
    chosen = found[:1] if require_uv else found
    requests = [
        _prepare(c, rp_id=rp_id, cdh=cdh, require_uv=require_uv, pin=pin, salt=hmac_salt)
        for c in chosen
    ]
    return _race(requests, rp_id, cdh, _keepalive(on_prompt), cancel, deadline)


# Long: threads, stop events and the wait loop share one scope so every exit stops them all.
def _race(
    requests: list[_Request],
    rp_id: str,
    cdh: bytes,
    keepalive: Callable[[int], None],
    cancel: threading.Event,
    deadline: float,
) -> AssertionResult:
    outcomes: queue.Queue[tuple[_Request, AssertionResponse | BaseException]] = queue.Queue()
    stops = [threading.Event() for _ in requests]

    def touch(req: _Request, stop: threading.Event) -> None:
        try:
            outcomes.put(
                (
                    req,
                    req.candidate.ctap.get_assertion(
                        rp_id,
                        cdh,
                        [{"type": "public-key", "id": req.candidate.cred.credential_id}],
                        req.extensions,
                        None,
                        req.pin_param,
                        req.pin_proto,
                        event=stop,
                        on_keepalive=keepalive,
                    ),
                )
            )
        except Exception as exc:  # handed to the waiting thread
            outcomes.put((req, exc))

    threads = [
        threading.Thread(target=touch, args=(r, s), daemon=True, name="fido2-touch")
        for r, s in zip(requests, stops, strict=True)
    ]
    for thread in threads:
        thread.start()

    def stop_all() -> None:
        for stop in stops:
            stop.set()
        for thread in threads:
            thread.join(_JOIN)

    failures: list[BaseException] = []
    while len(failures) < len(requests):
        if cancel.is_set():
            stop_all()
            raise Denied("the approval was cancelled")
        left = deadline - time.monotonic()
        if left <= 0:
            stop_all()
            raise ApprovalTimeout("no authenticator was touched in time")
        try:
            req, outcome = outcomes.get(timeout=min(left, _POLL))
        except queue.Empty:
            continue
        if isinstance(outcome, AssertionResponse):
            stop_all()
            return _result(req, outcome, cdh)
        failures.append(outcome)
    first = failures[0]
    if isinstance(first, CtapError):
        raise _ctap_error(first) from first
    if isinstance(first, VaultError):
        raise first
    raise ApprovalUnavailable(f"the authenticator failed ({first}); replug it") from first


def _result(req: _Request, resp: AssertionResponse, cdh: bytes) -> AssertionResult:
    cred = req.candidate.cred
    if bytes(resp.credential["id"]) != cred.credential_id:
        raise Fido2Rejected(
            "the authenticator answered with another credential than asked", check="credential"
        )
    output: bytes | None = None
    if req.hmac is not None:
        protocol, shared = req.hmac
        value = (resp.auth_data.extensions or {}).get(_HMAC_EXT)
        output = protocol.decrypt(shared, value) if isinstance(value, bytes) else None
        if output is None or len(output) != 32:
            raise Fido2Rejected(
                "the authenticator returned no hmac-secret output", check="hmac_secret"
            )
    return AssertionResult(cred, bytes(resp.auth_data), resp.signature, cdh, output)
