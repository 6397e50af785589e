"""One error hierarchy for vaultd, grouped by subsystem.

Every failure is a :class:`VaultError` subclass with a stable ``code`` (its wire name and the
key of its exit status; the list is ``docs/errors.md``), a message that says what failed and
what to do next, and where one next step fits every case, a ``fix``.  Extra facts are typed
attributes, never parsed out of the message.  Messages never contain secrets.

Codes never change once released: clients, scripts and the TUI match on them.
"""

from __future__ import annotations

from typing import ClassVar


class VaultError(Exception):
    """Base of every vaultd error."""

    code: ClassVar[str] = "VAULT_ERROR"
    exit_status: ClassVar[int] = 1
    fix: ClassVar[str] = ""
    """The next step that fits every occurrence; empty when the message alone says it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# --- configuration and permissions ---------------------------------------------------------


class ConfigError(VaultError):
    """A setting, a profile or a path is wrong."""

    code = "CONFIG_INVALID"
    exit_status = 78  # EX_CONFIG
    fix = "correct the named setting (see docs/configuration.md)"


class UnsafePermissions(ConfigError):
    """A file or directory is too open, foreign-owned or a symlink."""

    code = "UNSAFE_PERMISSIONS"
    fix = "run the chmod or chown the message shows"

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class UnknownProfile(ConfigError):
    """A request named a profile that is not configured."""

    code = "UNKNOWN_PROFILE"
    fix = "add a [profiles.NAME] table to the config, or use a configured name"


class PolicyInvalid(ConfigError):
    """An access policy failed validation; ``line`` and ``statement`` (Sid or index) say where."""

    code = "POLICY_INVALID"
    fix = "correct the policy file (`vaultd policy check`)"

    def __init__(
        self, message: str, *, line: int | None = None, statement: str | int | None = None
    ) -> None:
        super().__init__(message)
        self.line = line
        self.statement = statement


class PolicyContextInvalid(ConfigError):
    """An action, resource or condition key given for evaluation is unknown or mistyped."""

    code = "POLICY_CONTEXT_INVALID"
    fix = ""  # the message names the key; the config is not at fault


# --- the daemon's host process -------------------------------------------------------------


class HardeningFailed(VaultError):
    """The process could not be made non-dumpable or core dumps could not be disabled."""

    code = "HARDENING_FAILED"
    fix = "run vaultd where prctl and setrlimit are allowed (not under a tracer)"


class InternalError(VaultError):
    """The daemon failed unexpectedly; details are only in its log."""

    code = "INTERNAL_ERROR"
    exit_status = 70  # EX_SOFTWARE
    fix = "read the daemon's log and report the bug"


class ReplySchemaViolation(InternalError):
    """A reply did not match its op's declared schema, so it was not sent."""


# --- HSM: the PKCS#11 token and key store plugins ------------------------------------------


class HsmError(VaultError):
    """The PKCS#11 token, its module or a key store failed."""

    code = "HSM_ERROR"
    exit_status = 69  # EX_UNAVAILABLE


class Sealed(HsmError):
    """The vault is sealed: no token session is logged in."""

    code = "SEALED"
    fix = "run `vaultd unlock`"


class HsmPinIncorrect(HsmError):
    """The token refused the PIN."""

    code = "HSM_PIN_INCORRECT"

    def __init__(self, message: str, *, count_low: bool = False, final_try: bool = False) -> None:
        super().__init__(message)
        self.count_low = count_low
        self.final_try = final_try


class HsmPinFinalTry(HsmError):
    """The token is at its final PIN try; log in only after the person typed back the challenge."""

    code = "HSM_PIN_FINAL_TRY"

    def __init__(self, message: str, *, challenge: str | None = None) -> None:
        super().__init__(message)
        self.challenge = challenge


class HsmPinLocked(HsmError):
    """The token's user PIN is locked."""

    code = "HSM_PIN_LOCKED"
    fix = "unblock the user PIN with the token's SO PIN (the vendor's tool)"


class HsmKeyUnsafe(HsmError):
    """The key-encryption key has an unsafe attribute, or is missing or duplicated."""

    code = "HSM_KEY_UNSAFE"

    def __init__(self, message: str, *, attribute: str) -> None:
        super().__init__(message)
        self.attribute = attribute


class KeyUsageExhausted(HsmError):
    """The token key may seal nothing more: it reached 2^30 encryptions, or its counter is corrupt.

    Decryption still works. ``key_label`` names the key; ``corrupt`` is true when the token's
    encryption counter could not be read (it is never reset to 0).
    """

    code = "HSM_KEY_EXHAUSTED"
    fix = "rotate to a new token key (`vaultd rotate`)"

    def __init__(self, message: str, *, key_label: str, corrupt: bool = False) -> None:
        super().__init__(message)
        self.key_label = key_label
        self.corrupt = corrupt


class HsmModuleRefused(HsmError):
    """The PKCS#11 module path is not allowlisted or is writable by others."""

    code = "HSM_MODULE_REFUSED"
    fix = "install the module root-owned, or list its path in pkcs11.module_allowlist"


class HsmModuleLoadFailed(HsmError):
    """The PKCS#11 module could not be loaded (missing file, wrong architecture, bad config)."""

    code = "HSM_MODULE_LOAD_FAILED"
    fix = (
        "set [pkcs11] module to the path of an installed PKCS#11 library (for SoftHSM2, also "
        "SOFTHSM2_CONF), then restart the daemon"
    )


class TokenNotFound(HsmError):
    """No token with the configured label is present."""

    code = "TOKEN_NOT_FOUND"
    fix = "insert the token, or set pkcs11.token_label to its label"


class TokenAmbiguous(HsmError):
    """More than one token carries the configured label."""

    code = "TOKEN_AMBIGUOUS"
    fix = "remove one of the tokens, or relabel it"


class KeyStoreUnavailable(HsmError):
    """A software key store could not read, create or parse its key (the OS keyring failed)."""

    code = "KEYSTORE_UNAVAILABLE"


# --- sealed store --------------------------------------------------------------------------


class StoreError(VaultError):
    """The sealed store could not be read or written."""

    code = "STORE_ERROR"
    exit_status = 74  # EX_IOERR


class RecordCorrupt(StoreError):
    """A sealed record failed to parse or authenticate."""

    code = "RECORD_CORRUPT"
    fix = "remove the record and add it again, or restore the store from a backup"


class StoreRollback(StoreError):
    """The store is older than the generation anchored in the token."""

    code = "STORE_ROLLBACK"
    fix = "restore the newest store file"


class StoreUnreadable(StoreError):
    """The store file is truncated, empty, of a wrong magic or of an unknown version."""

    code = "STORE_UNREADABLE"
    fix = "restore the previous generation kept beside the store"


class StoreExists(StoreError):
    """``initialize`` found a store file already in place and will not overwrite it."""

    code = "STORE_EXISTS"
    exit_status = 1


class RecordNotFound(StoreError):
    """No record of that kind and name is stored."""

    code = "RECORD_NOT_FOUND"
    exit_status = 1
    fix = "see the stored names with `vaultd list`"


class RecordExists(StoreError):
    """A record of that kind and name is already stored."""

    code = "RECORD_EXISTS"
    exit_status = 1
    fix = "remove it first (`vaultd remove NAME`) or choose another name"


# --- audit log -----------------------------------------------------------------------------


class AuditError(VaultError):
    """The audit log could not be written in time; nothing was released."""

    code = "AUDIT_UNAVAILABLE"
    exit_status = 74
    fix = "free space on the audit log's file system, or fix its permissions"


class AuditTampered(AuditError):
    """An audit record's MAC does not match: the log was altered."""

    code = "AUDIT_TAMPERED"
    fix = "keep the log for investigation; compare it with a copy kept elsewhere"


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


# --- approvals, grants and the access policy -----------------------------------------------


class GateError(VaultError):
    """A human approval or a local gate did not pass."""

    code = "GATE_ERROR"


class Denied(GateError):
    """The user denied the request."""

    code = "DENIED"


class DeniedCooldown(Denied):
    """A request for this profile was just denied or timed out; retry after ``retry_after`` s."""

    code = "COOLDOWN"
    fix = "wait, or end it with `vaultd approvals --clear-cooldown PROFILE`"

    def __init__(self, message: str, *, retry_after: float, key: object = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.key = key


class ApprovalTimeout(GateError):
    """Nobody answered the approval in time."""

    code = "APPROVAL_TIMEOUT"


class ApprovalUnavailable(GateError):
    """No way to ask the user is available."""

    code = "APPROVAL_UNAVAILABLE"
    fix = "start `vaultd tui`, run the command from a terminal, or enrol the factor it names"


class PromptFailed(GateError):
    """The prompt dialog (approval.prompt) could not ask for the code or answered nonsense."""

    code = "PROMPT_FAILED"
    fix = "install the dialog approval.prompt names, or set approval.prompt to another one"


class ApprovalNotFound(GateError):
    """No pending approval has that id."""

    code = "APPROVAL_NOT_FOUND"
    fix = "list the pending approvals with `vaultd approvals`"


class GrantUsed(GateError):
    """A single-use grant was already read."""

    code = "GRANT_USED"


class PolicyDenied(GateError):
    """The access policy denies the request; ``statement`` is the deny's Sid or index."""

    code = "ACCESS_DENIED_BY_POLICY"

    def __init__(self, message: str, *, statement: str | int | None) -> None:
        super().__init__(message)
        self.statement = statement


class BreakGlassOnly(VaultError):
    """Root credentials are served only through the break-glass flow."""

    code = "BREAK_GLASS_ONLY"
    fix = "use `vaultd break-glass`"


# --- FIDO2 authenticators ------------------------------------------------------------------


class Fido2NoDevice(ApprovalUnavailable):
    """No connected FIDO2 authenticator holds an enrolled credential that can answer."""

    code = "FIDO2_NO_DEVICE"
    fix = "plug in an enrolled security key (`vaultd fido2 list` names them)"


class Fido2Rejected(GateError):
    """A FIDO2 assertion failed a check (the check is named)."""

    code = "FIDO2_REJECTED"

    def __init__(self, message: str, *, check: str) -> None:
        super().__init__(message)
        self.check = check


class Fido2Suspect(GateError):
    """A FIDO2 signCount went back or stood still: a possible cloned authenticator."""

    code = "FIDO2_SUSPECT"
    fix = "check who had the key; remove the credential (`vaultd fido2 remove`) and enrol again"


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
    fix = "unplug the authenticator and plug it in again"


class Fido2PinBlocked(GateError):
    """The authenticator's PIN is blocked."""

    code = "FIDO2_PIN_BLOCKED"
    fix = "only a reset unblocks it, and a reset wipes its credentials: use a backup key"


# --- MFA codes -----------------------------------------------------------------------------


class MfaError(VaultError):
    """An MFA code was malformed, reused, rate-limited or rejected."""

    code = "MFA_ERROR"


class CodeMalformed(MfaError):
    """A code does not match ^[0-9]{6}$."""

    code = "CODE_MALFORMED"
    fix = "type the six digits the MFA device shows"


class CodeReused(MfaError):
    """A code's time step was already sent for this MFA serial."""

    code = "CODE_REUSED"
    fix = "wait for the next code"


class RateLimited(MfaError):
    """Too many failed codes or PINs; try again after ``retry_after`` seconds."""

    code = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MfaRejected(MfaError):
    """AWS rejected the MFA code (AccessDenied on an MFA call)."""

    code = "MFA_REJECTED"
    fix = "check the code and the system clock, and that mfa_serial names the device"


class MfaLocked(MfaError):
    """Too many consecutive failed codes: the MFA serial is locked until the user unlocks it."""

    code = "MFA_LOCKED"


# --- STS -----------------------------------------------------------------------------------


class StsError(VaultError):
    """An STS call failed."""

    code = "STS_ERROR"
    exit_status = 69


class StsThrottled(StsError):
    """STS throttled the call."""

    code = "STS_THROTTLED"
    fix = "try again in a minute"


class StsUnavailable(StsError):
    """STS did not answer, timed out or failed on its side."""

    code = "STS_UNAVAILABLE"
    fix = "check the network and the STS endpoint, then try again"


class StsExpiredToken(StsError):
    """STS says the session token used is expired."""

    code = "STS_EXPIRED_TOKEN"


class StsRegionDisabled(StsError):
    """STS is not enabled in the profile's region."""

    code = "STS_REGION_DISABLED"
    fix = "activate STS in that region in IAM, or set the profile's region to another"


class StsKeyInvalid(StsError):
    """STS does not know the stored access key (revoked or rotated elsewhere)."""

    code = "STS_KEY_INVALID"
    fix = "store the current key pair again (`vaultd add NAME`)"


class StsClockSkew(StsError):
    """STS says the request was signed too far from its time."""

    code = "STS_CLOCK_SKEW"
    fix = "set the system clock (enable NTP)"


class StsAccessDenied(StsError):
    """STS denied a call that carried no MFA code."""

    code = "STS_ACCESS_DENIED"


class StsDuration(StsError):
    """STS refused the session duration or the policy size."""

    code = "STS_DURATION"
    fix = "lower the profile's duration_seconds (role chaining allows at most 3600)"


# --- IAM access-key rotation ---------------------------------------------------------------


class RotationError(VaultError):
    """Rotating a stored access key (or an IAM call made for it) failed."""

    code = "ROTATION_FAILED"
    exit_status = 69


class AccessKeyLimit(RotationError):
    """IAM already holds two access keys for the user, so no new one can be made."""

    code = "ACCESS_KEY_LIMIT"
    fix = "delete the unused access key in IAM, then rotate again"


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


# --- console sign-in -----------------------------------------------------------------------


class FederationFailed(VaultError):
    """The AWS federation endpoint refused the session or could not be reached."""

    code = "FEDERATION_FAILED"
    exit_status = 69  # EX_UNAVAILABLE


class BrowserUnavailable(VaultError):
    """No web browser opened the console sign-in link."""

    code = "BROWSER_UNAVAILABLE"
    exit_status = 69
    fix = "set $BROWSER, or run `vaultd login` on a desktop session"


# --- the socket protocol -------------------------------------------------------------------


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


class RequestTimeout(ProtocolError):
    """A request was not read and answered within the server's whole-request deadline."""

    code = "REQUEST_TIMEOUT"


class PeerRefused(ProtocolError):
    """The peer is not allowed: another uid, or a process that changed since it connected."""

    code = "PEER_REFUSED"


class ClientGone(ProtocolError):
    """The client disconnected before its reply was ready; nothing was sent to it."""

    code = "CLIENT_GONE"


class Busy(ProtocolError):
    """Too many connections or waiters."""

    code = "BUSY"
    fix = "try again shortly"


class DaemonAlreadyRunning(Busy):
    """Another vaultd already answers on the socket path."""

    code = "ALREADY_RUNNING"
    fix = "stop the other daemon, or give this one another socket"


# --- plugins -------------------------------------------------------------------------------


class PluginError(VaultError):
    """A plugin a profile requires is not available."""

    code = "PLUGIN_UNAVAILABLE"
    fix = "see why with `vaultd plugins list`"


# --- clients -------------------------------------------------------------------------------


class DaemonNotRunning(ProtocolError):
    """No daemon answers on the socket."""

    code = "DAEMON_NOT_RUNNING"
    exit_status = 69
    fix = "start it with `vaultd serve` (or its systemd unit)"


class UnsafeSocket(ProtocolError):
    """The socket a client found is not provably the user's daemon; nothing was sent to it."""

    code = "UNSAFE_SOCKET"
    fix = "remove the foreign socket or directory it names, then start `vaultd serve` again"


class NotConfirmed(VaultError):
    """A destructive command was not confirmed by a person (or ``--yes``)."""

    code = "NOT_CONFIRMED"
    fix = "type the name back when asked, or pass --yes in a script"


def reference() -> str:
    """``docs/errors.md``: every code with its family, exit status, meaning and fix."""
    lines = [
        "# Error codes",
        "",
        "Generated from `vaultd/errors.py` by `vaultd.errors.reference()`;",
        "`tests/unit/test_docs.py` keeps it current. A code never changes once released: it is",
        "the `error.code` of a socket reply and the `vaultd: CODE:` prefix of a failed command.",
        "",
        "| Code | Family | Exit | Meaning | Fix |",
        "| --- | --- | --- | --- | --- |",
    ]
    for cls in _classes():
        family = cls.__mro__[-5].__name__ if len(cls.__mro__) > 4 else cls.__name__
        meaning = (cls.__doc__ or "").strip().splitlines()[0]
        lines.append(f"| `{cls.code}` | {family} | {cls.exit_status} | {meaning} | {cls.fix} |")
    return "\n".join(lines) + "\n"


def _classes() -> list[type[VaultError]]:
    """The classes that define a code, in the order of this module."""
    return [
        value
        for value in globals().values()
        if isinstance(value, type) and issubclass(value, VaultError) and "code" in vars(value)
    ]
