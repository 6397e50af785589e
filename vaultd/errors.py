"""One error hierarchy for vaultd.

Every failure is a :class:`VaultError` subclass with a stable ``code`` (the wire name, see
THREATS §1) and a message that says what failed and what to do next.  Extra facts are typed
attributes, never parsed out of the message.  Messages never contain secrets.
"""

from __future__ import annotations

from typing import ClassVar


class VaultError(Exception):
    """Base of every vaultd error."""

    code: ClassVar[str] = "VAULT_ERROR"
    exit_status: ClassVar[int] = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# --- configuration and permissions -------------------------------------------------------


class ConfigError(VaultError):
    """A setting, a profile or a path is wrong."""

    code = "CONFIG_INVALID"
    exit_status = 78  # EX_CONFIG


class UnsafePermissions(ConfigError):
    """A file or directory is too open, foreign-owned or a symlink."""

    code = "UNSAFE_PERMISSIONS"

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class UnknownProfile(ConfigError):
    """A request named a profile that is not configured."""

    code = "UNKNOWN_PROFILE"


# --- hardware token ------------------------------------------------------------------------


class HsmError(VaultError):
    """The PKCS#11 token or module failed."""

    code = "HSM_ERROR"
    exit_status = 69  # EX_UNAVAILABLE


class Sealed(HsmError):
    """The vault is sealed: no token session is logged in."""

    code = "SEALED"


class HsmPinIncorrect(HsmError):
    """The token refused the PIN."""

    code = "HSM_PIN_INCORRECT"

    def __init__(self, message: str, *, count_low: bool = False, final_try: bool = False) -> None:
        super().__init__(message)
        self.count_low = count_low
        self.final_try = final_try


class HsmPinLocked(HsmError):
    """The token's user PIN is locked."""

    code = "HSM_PIN_LOCKED"


class HsmKeyUnsafe(HsmError):
    """The key-encryption key has an unsafe attribute, or is missing or duplicated."""

    code = "HSM_KEY_UNSAFE"

    def __init__(self, message: str, *, attribute: str) -> None:
        super().__init__(message)
        self.attribute = attribute


class HsmModuleRefused(HsmError):
    """The PKCS#11 module path is not allowlisted or is writable by others."""

    code = "HSM_MODULE_REFUSED"


class TokenNotFound(HsmError):
    """No token with the configured label is present."""

    code = "TOKEN_NOT_FOUND"


# --- store ---------------------------------------------------------------------------------


class StoreError(VaultError):
    """The sealed store could not be read or written."""

    code = "STORE_ERROR"
    exit_status = 74  # EX_IOERR


class RecordCorrupt(StoreError):
    """A sealed record failed to parse or authenticate."""

    code = "RECORD_CORRUPT"


class StoreRollback(StoreError):
    """The store is older than the generation anchored in the token."""

    code = "STORE_ROLLBACK"


class StoreUnreadable(StoreError):
    """The store file is truncated, empty, of a wrong magic or of an unknown version."""

    code = "STORE_UNREADABLE"


class RecordNotFound(StoreError):
    """No record of that kind and name is stored."""

    code = "RECORD_NOT_FOUND"
    exit_status = 1


class RecordExists(StoreError):
    """A record of that kind and name is already stored."""

    code = "RECORD_EXISTS"
    exit_status = 1


# --- approvals and gates -------------------------------------------------------------------


class GateError(VaultError):
    """A human approval or a local gate did not pass."""

    code = "GATE_ERROR"


class Denied(GateError):
    """The user denied the request (or a cooldown after a denial is running)."""

    code = "DENIED"


class ApprovalTimeout(GateError):
    """Nobody answered the approval in time."""

    code = "APPROVAL_TIMEOUT"


class ApprovalUnavailable(GateError):
    """No way to ask the user is available."""

    code = "APPROVAL_UNAVAILABLE"


class ApprovalNotFound(GateError):
    """No pending approval has that id."""

    code = "APPROVAL_NOT_FOUND"


class GrantUsed(GateError):
    """A single-use grant was already read."""

    code = "GRANT_USED"


class Fido2Rejected(GateError):
    """A FIDO2 assertion failed a check (the check is named)."""

    code = "FIDO2_REJECTED"

    def __init__(self, message: str, *, check: str) -> None:
        super().__init__(message)
        self.check = check


class Fido2Suspect(GateError):
    """A FIDO2 signCount went back or stood still: a possible cloned authenticator."""

    code = "FIDO2_SUSPECT"


class Fido2PinBlocked(GateError):
    """The authenticator's PIN is blocked."""

    code = "FIDO2_PIN_BLOCKED"


# --- MFA codes -----------------------------------------------------------------------------


class MfaError(VaultError):
    """An MFA code was malformed, reused, rate-limited or rejected."""

    code = "MFA_ERROR"


class CodeMalformed(MfaError):
    """A code does not match ^[0-9]{6}$."""

    code = "CODE_MALFORMED"


class CodeReused(MfaError):
    """A code's time step was already sent for this MFA serial."""

    code = "CODE_REUSED"


class RateLimited(MfaError):
    """Too many failed codes or PINs; try again after ``retry_after`` seconds."""

    code = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MfaRejected(MfaError):
    """AWS rejected the MFA code (AccessDenied on an MFA call)."""

    code = "MFA_REJECTED"


# --- STS -----------------------------------------------------------------------------------


class StsError(VaultError):
    """An STS call failed."""

    code = "STS_ERROR"
    exit_status = 69


class StsThrottled(StsError):
    code = "STS_THROTTLED"


class StsUnavailable(StsError):
    code = "STS_UNAVAILABLE"


class StsExpiredToken(StsError):
    code = "STS_EXPIRED_TOKEN"


class StsRegionDisabled(StsError):
    code = "STS_REGION_DISABLED"


class StsKeyInvalid(StsError):
    code = "STS_KEY_INVALID"


class StsClockSkew(StsError):
    code = "STS_CLOCK_SKEW"


class StsAccessDenied(StsError):
    code = "STS_ACCESS_DENIED"


class StsDuration(StsError):
    code = "STS_DURATION"


# --- serving, protocol, audit, plugins -----------------------------------------------------


class BreakGlassOnly(VaultError):
    """Root credentials are served only through the break-glass flow."""

    code = "BREAK_GLASS_ONLY"


class SessionExpiring(VaultError):
    """The only session available has less than the serving floor left."""

    code = "SESSION_EXPIRING"


class ProtocolError(VaultError):
    """A frame or request on the socket was malformed, refused or not answered."""

    code = "PROTOCOL_ERROR"
    exit_status = 76  # EX_PROTOCOL


class BadRequest(ProtocolError):
    """A request failed the schema; the field is named."""

    code = "BAD_REQUEST"


class FrameTooLarge(ProtocolError):
    """A frame's length prefix exceeds the cap."""

    code = "FRAME_TOO_LARGE"


class PeerRefused(ProtocolError):
    """The peer's uid is not allowed."""

    code = "PEER_REFUSED"


class ClientGone(ProtocolError):
    """The client disconnected before its reply was ready; nothing was sent to it."""

    code = "CLIENT_GONE"


class Busy(ProtocolError):
    """Too many connections or waiters."""

    code = "BUSY"


class DaemonNotRunning(ProtocolError):
    """No daemon answers on the socket."""

    code = "DAEMON_NOT_RUNNING"
    exit_status = 69


class AuditError(VaultError):
    """The audit log could not be written in time; nothing was released."""

    code = "AUDIT_UNAVAILABLE"
    exit_status = 74


class PluginError(VaultError):
    """A plugin a profile requires is not available."""

    code = "PLUGIN_UNAVAILABLE"


def _all_subclasses(cls: type[VaultError]) -> list[type[VaultError]]:
    out: list[type[VaultError]] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


def exit_status_for(code: str) -> int:
    """Exit status a command uses for an error that arrived as a wire ``code``."""
    for cls in _all_subclasses(VaultError):
        if cls.code == code:
            return cls.exit_status
    return VaultError.exit_status


# --- sealed store (Foundation item 4) ------------------------------------------------------


class StoreExists(StoreError):
    """``initialize`` found a store file already in place and will not overwrite it."""

    code = "STORE_EXISTS"
    exit_status = 1


# --- FIDO2 (vaultd/fido2) ------------------------------------------------------------------


class Fido2PinRequired(GateError):
    """The authenticator needs its PIN for this operation and none was given."""

    code = "FIDO2_PIN_REQUIRED"


class Fido2PinInvalid(GateError):
    """The authenticator refused the PIN; ``attempts_remaining`` tries are left (if known)."""

    code = "FIDO2_PIN_INVALID"

    def __init__(self, message: str, *, attempts_remaining: int | None) -> None:
        super().__init__(message)
        self.attempts_remaining = attempts_remaining


class Fido2PinAuthBlocked(GateError):
    """Too many wrong PINs in a row: the authenticator must be unplugged and replugged."""

    code = "FIDO2_PIN_AUTH_BLOCKED"


# --- IPC transport (vaultd/ipc) ------------------------------------------------------------


class RequestTimeout(ProtocolError):
    """A request was not read and answered within the server's whole-request deadline."""

    code = "REQUEST_TIMEOUT"


class InternalError(VaultError):
    """The daemon failed unexpectedly; details are only in its log."""

    code = "INTERNAL_ERROR"
    exit_status = 70  # EX_SOFTWARE


class DaemonAlreadyRunning(Busy):
    """Another vaultd already answers on the socket path."""

    code = "ALREADY_RUNNING"


# --- PKCS#11 adapter (vaultd/hsm) ----------------------------------------------------------


class TokenAmbiguous(HsmError):
    """More than one token carries the configured label."""

    code = "TOKEN_AMBIGUOUS"


class AuditTampered(AuditError):
    """An audit record's MAC does not match: the log was altered."""

    code = "AUDIT_TAMPERED"


# --- access policies (vaultd/core/access_policy.py) -------------------------------------------


class PolicyInvalid(ConfigError):
    """An access policy failed validation; ``line`` and ``statement`` (Sid or index) say where."""

    code = "POLICY_INVALID"

    def __init__(
        self, message: str, *, line: int | None = None, statement: str | int | None = None
    ) -> None:
        super().__init__(message)
        self.line = line
        self.statement = statement


class PolicyContextInvalid(ConfigError):
    """An action, resource or condition key given for evaluation is unknown or mistyped."""

    code = "POLICY_CONTEXT_INVALID"


class PolicyDenied(GateError):
    """The access policy denies the request; ``statement`` is the deny's Sid or index."""

    code = "ACCESS_DENIED_BY_POLICY"

    def __init__(self, message: str, *, statement: str | int | None) -> None:
        super().__init__(message)
        self.statement = statement


# --- daemon core: single-flight and OTP ledger (vaultd/core/singleflight.py, otp_ledger.py) --


class DeniedCooldown(Denied):
    """A request for this key was just denied or timed out; retry after ``retry_after`` s."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MfaLocked(MfaError):
    """Too many consecutive failed codes: the MFA serial is locked until the user unlocks it."""

    code = "MFA_LOCKED"


# --- audit log verification (vaultd/store/audit.py) ----------------------------------------


class AuditRecordTampered(AuditTampered):
    """An audit record or the head anchor failed verification; the attributes say where."""

    def __init__(
        self, message: str, *, path: str, line: int | None, seq: int | None, reason: str
    ) -> None:
        super().__init__(message)
        self.path = path
        self.line = line
        self.seq = seq
        self.reason = reason


# --- access-key rotation (vaultd/aws/iam.py, vaultd/core/rotation.py) ---------------------------


class RotationError(VaultError):
    """Rotating a stored access key (or an IAM call made for it) failed."""

    code = "ROTATION_FAILED"
    exit_status = 69


class AccessKeyLimit(RotationError):
    """IAM already holds two access keys for the user, so no new one can be made."""

    code = "ACCESS_KEY_LIMIT"


class IamAccessDenied(RotationError):
    """IAM denied a call on the user's own access keys (the policy may require MFA)."""

    code = "IAM_ACCESS_DENIED"


class IamError(RotationError):
    """Another IAM error; ``aws_code`` is AWS's error code ("" if there was no reply)."""

    code = "IAM_ERROR"

    def __init__(self, message: str, *, aws_code: str = "") -> None:
        super().__init__(message)
        self.aws_code = aws_code


class IamUnavailable(IamError):
    """IAM did not answer, throttled or failed on its side; try again later."""

    code = "IAM_UNAVAILABLE"


class RotationAborted(RotationError):
    """A rotation stopped after making a new key; ``step`` failed, the old key stays stored.

    ``leftover_key_id`` is the masked id of a key left in IAM that must be deleted by hand
    (``None`` when the new key was deleted again).
    """

    code = "ROTATION_ABORTED"

    def __init__(self, message: str, *, step: str, leftover_key_id: str | None) -> None:
        super().__init__(message)
        self.step = step
        self.leftover_key_id = leftover_key_id


# --- plugins and key stores (vaultd/plugin/registry.py, vaultd/plugin/api.py, plugins/) -----------


class KeyStoreUnavailable(HsmError):
    """A software key store could not read, create or parse its key (the OS keyring failed)."""

    code = "KEYSTORE_UNAVAILABLE"


# --- credential server and console sign-in (vaultd/aws/container_endpoint.py, aws/federation.py) --


class FederationFailed(VaultError):
    """The AWS federation endpoint refused the session or could not be reached."""

    code = "FEDERATION_FAILED"
    exit_status = 69  # EX_UNAVAILABLE


class BrowserUnavailable(VaultError):
    """No web browser opened the console sign-in link."""

    code = "BROWSER_UNAVAILABLE"
    exit_status = 69


# --- HSM PIN final try (vaultd/keys/pkcs11.py, THREATS T9) ----------------------------------


class HsmPinFinalTry(HsmError):
    """The token is at its final PIN try; log in only after the person typed a confirmation."""

    code = "HSM_PIN_FINAL_TRY"


# --- AES-GCM usage limit per key (vaultd/keys/pkcs11.py, THREATS T8) ------------------------


class KeyUsageExhausted(HsmError):
    """The token key may seal nothing more: it reached 2^30 encryptions, or its counter is corrupt.

    Decryption still works. ``key_label`` names the key; ``corrupt`` is true when the token's
    encryption counter could not be read (it is never reset to 0).
    """

    code = "HSM_KEY_EXHAUSTED"

    def __init__(self, message: str, *, key_label: str, corrupt: bool = False) -> None:
        super().__init__(message)
        self.key_label = key_label
        self.corrupt = corrupt


# --- reply schema (vaultd/ipc/replies.py, THREATS T28) -------------------------------------


class ReplySchemaViolation(InternalError):
    """A reply did not match its op's declared schema, so it was not sent."""


# --- clients checking the daemon (vaultd/credproc.py, vaultd/ipc/client.py; T29) ------------


class UnsafeSocket(ProtocolError):
    """The socket a client found is not provably the user's daemon; nothing was sent to it."""

    code = "UNSAFE_SOCKET"
