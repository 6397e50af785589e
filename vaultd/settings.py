"""Typed settings: a TOML file plus ``VAULTD_`` environment variables (``__`` nests).

The file is ``$VAULTD_CONFIG`` or ``~/.config/vaultd/config.toml``.  There is no PIN field:
the PIN comes from ``pkcs11.pin_source`` (the OS keyring, a 0600 file, or a prompt), never
from argv, the plain environment or this file.  Every invalid value fails at load with
:class:`vaultd.errors.ConfigError` naming the key, the value and what is allowed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from vaultd.core import assume_root
from vaultd.core.model import PROFILE_NAME_RE, ApprovalMethod, ProfileKind
from vaultd.core.serving import (
    DEFAULT_APPROVAL_TIMEOUT,
    MAX_APPROVAL_TIMEOUT,
    MIN_APPROVAL_TIMEOUT,
    SERVE_FLOOR_SECONDS,
    validate_duration,
)
from vaultd.errors import ConfigError
from vaultd.plugin.registry import Kind, allows, parse_allow
from vaultd.system.hardening import check_owned_not_writable

SERIAL_RE = re.compile(r"^[\w+=/:,.@-]{9,256}$")
ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
SESSION_NAME_RE = re.compile(r"^[\w+=,.@-]{2,64}$")
EXTERNAL_ID_RE = re.compile(r"^[\w+=,.@:/-]{2,1224}$")
KEYSTORE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def default_config_path() -> Path:
    """``$VAULTD_CONFIG`` or ``$XDG_CONFIG_HOME/vaultd/config.toml``."""
    explicit = os.environ.get("VAULTD_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "vaultd" / "config.toml"


def config_digest() -> str:
    """The SHA-256 (hex) of the config file :func:`load_settings` reads; empty without one.

    The daemon reports the digest of the file it runs with, so `vaultd status` can say when
    the file changed since (reload it with SIGHUP)."""
    import hashlib

    path = default_config_path()
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return ""


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/vaultd`` (``~/.local/share/vaultd``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "vaultd"


def default_socket() -> Path:
    """``$XDG_RUNTIME_DIR/vaultd/vaultd.sock``, else ``/tmp/vaultd-UID/vaultd.sock``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "vaultd" / "vaultd.sock"
    return Path(f"/tmp/vaultd-{os.getuid()}") / "vaultd.sock"  # noqa: S108 - private 0700 dir


PIV_SLOT_RE = r"^(9[acde]|8[2-9a-f]|9[0-5])$"
"""A PIV key slot as ``ykman`` names it: 9a, 9c, 9d, 9e or a retired slot 82..95."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class Pkcs11Settings(_Section):
    """Where the key-encryption key lives."""

    module: str | None = None
    """Path of the PKCS#11 module (for example /usr/lib/softhsm/libsofthsm2.so)."""
    token_label: str = Field("vaultd", min_length=1, max_length=32)
    """Label of the token that holds the key (PKCS#11 labels are at most 32 bytes)."""
    key_label: str = Field("vaultd-kek", min_length=1, max_length=64)
    """Label of the AES-256 key-encryption key inside the token."""
    pin_source: str = "keyring"
    """`keyring` (default), `file:/abs/path` (0600, yours; systemd credentials) or `prompt`."""
    call_timeout: float = Field(5.0, gt=0, le=120)
    """Seconds one token call may take; a hung token seals the vault."""
    module_allowlist: tuple[str, ...] = ()
    """Extra module paths allowed besides the built-in list of known vendor modules."""
    scheme: Literal["auto", "aead", "ecdh", "rsa-oaep"] = "auto"
    """How records are sealed: `aead` (AES-256-GCM inside the token), `ecdh` (a P-256 token
    key; the KDF and AES-GCM run on the host), `rsa-oaep` (an RSA-2048 token key unwraps each
    record's data key; AES-GCM on the host) or `auto` (the token's ECDH or RSA key if present,
    else probed: `aead` where the token has AES-GCM, HMAC and data objects, then `ecdh`, then
    `rsa-oaep`). SECURITY.md compares."""
    piv_slot: str = Field("82", pattern=PIV_SLOT_RE)
    """On a PIV card (YubiKey through ykcs11, OpenSC's PIV driver): the slot of the vault's
    P-256 key (retired slot 82 by default); `vaultd init` generates it when empty."""
    piv_audit_slot: str = Field("9a", pattern=PIV_SLOT_RE)
    """On a PIV card: the slot of the key that signs audit batches (9a by default: OpenSC lets
    retired keys derive but not sign); `vaultd init` generates it when empty."""
    touch_policy: Literal["always", "cached", "never"] = "cached"
    """On a PIV card: the touch policy `vaultd init` gives the vault key it generates (PIN
    policy once; the audit key: touch never). `always`: every record open waits for a touch, so
    malware that has the PIN cannot open a record without a finger on the key. `cached`: one
    touch serves 15 s. Set before init: a key keeps the policy it was made with."""

    @model_validator(mode="after")
    def _distinct_piv_slots(self) -> Pkcs11Settings:
        if self.piv_slot == self.piv_audit_slot:
            raise ValueError("piv_slot and piv_audit_slot must name two different slots")
        return self

    @field_validator("pin_source")
    @classmethod
    def _pin_source(cls, value: str) -> str:
        if value in ("keyring", "prompt"):
            return value
        if value.startswith("file:") and Path(value[5:]).is_absolute():
            return value
        raise ValueError("allowed: 'keyring', 'prompt' or 'file:/absolute/path'")


class IpcSettings(_Section):
    """The Unix socket server."""

    allow_root: bool = False
    """Let uid 0 talk to the daemon (audited)."""
    max_connections: int = Field(256, ge=1, le=4096)
    """Connections served at once; more are refused at once with BUSY."""
    read_timeout: float = Field(5.0, gt=0, le=60)
    """Seconds a client may take to send a frame."""
    request_timeout: float = Field(60.0, gt=0, le=300)
    """Seconds one request may take in all (approval waits included)."""


class CacheSettings(_Section):
    """The in-memory session cache."""

    serve_floor_seconds: int = Field(SERVE_FLOOR_SECONDS, ge=SERVE_FLOOR_SECONDS, le=3000)
    """Serve a session only while at least this many seconds remain (never below 900)."""
    idle_seconds: int = Field(3600, ge=60, le=43200)
    """Drop a cached session no request has used for this long; the next request asks again
    (the STS expiration stays the absolute limit)."""


class ApprovalSettings(_Section):
    """Pending approvals."""

    timeout_seconds: float = Field(
        DEFAULT_APPROVAL_TIMEOUT, ge=MIN_APPROVAL_TIMEOUT, le=MAX_APPROVAL_TIMEOUT
    )
    """How long an approval stays open (under 55 s: the Go SDK kills credential_process at 60)."""
    cooldown_seconds: float = Field(30.0, ge=0, le=600)
    """After a deny or timeout, new requests for the same session fail fast for this long."""
    out_of_band: bool = False
    """Let `vaultd approve` (another terminal, a script, a notifier telling the user) answer code
    approvals that no terminal or TUI shows; off by default: deny when nobody can be asked."""
    prompt: Literal["auto", "terminal", "pinentry", "zenity", "kdialog", "osascript", "none"] = (
        "auto"
    )
    """How a code approval reaches a client with no terminal but a display (an IDE, a GUI tool):
    `auto` asks on an open `vaultd tui`, else runs pinentry on the client's display; a dialog
    name always runs that dialog (pinentry over Assuan, or zenity, kdialog, osascript);
    `terminal` and `none` run no dialog (the client's terminal, `vaultd tui` or, with
    out_of_band, `vaultd approve` answer)."""
    scope: Literal["session", "user"] = "session"
    """Who an approval covers, like sudo's tty tickets: `session` releases a profile's session
    only to processes of the approved login session (kernel session id), others are asked
    again; `user` serves every process of the user from the cache."""


class Fido2Settings(_Section):
    """FIDO2 authenticators."""

    devices: tuple[str, ...] = ("hid",)
    """`hid` for real authenticators; `soft:STATE_FILE` for the software one (tests, demo)."""
    rp_id: str = "vaultd"
    """The FIDO2 relying-party id credentials are made for."""


class PluginSettings(_Section):
    """Plugins are loaded only when allowlisted here by group and entry-point name."""

    allow: tuple[str, ...] = ()
    """Plugins that may load, as `GROUP/NAME` (`notify/desktop`, `mfa/yubikey-oath`,
    `keystore/keyring`), or `GROUP/NAME@DISTRIBUTION` where two distributions offer one name."""
    yubikey_oath_names: dict[str, str] = Field(default_factory=dict)
    """For the `yubikey-oath` code source: MFA serial -> YubiKey OATH credential id
    (`issuer:name`); empty by default: a serial not listed is looked up under its own name."""

    @field_validator("allow")
    @classmethod
    def _allow(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        parse_allow(value)
        return value


class AuditSettings(_Section):
    """The audit log."""

    path: Path | None = None
    """Defaults to DATA_DIR/audit.log."""
    max_bytes: int = Field(8 * 1024 * 1024, ge=64 * 1024)
    """Rotate the log (keeping the hash chain) once it would grow past this size."""


class ReportSettings(_Section):
    """The credential report (`vaultd report`)."""

    rotation_days: int = Field(90, ge=1, le=3650)
    """A stored key pair older than this many days is marked due for rotation (`ROTATE`)."""


class ProfileSettings(_Section):
    """One profile, in AWS config vocabulary."""

    credentials: str | None = None
    """Name of a stored key pair (`vaultd add NAME`)."""
    source_profile: str | None = None
    """A profile with `credentials` whose MFA session this role is assumed from."""
    role_arn: str | None = None
    """Assume this role (chained from the source's MFA session up to 3600 s, directly with
    the long-lived keys and MFA above that)."""
    mfa_serial: str | None = None
    """The MFA device ARN or serial; required with `credentials` (every session uses MFA)."""
    duration_seconds: int | None = None
    """Session length: GetSessionToken 900-129600 (default 43200), AssumeRole 900-43200
    (default 3600)."""
    external_id: str | None = None
    """ExternalId passed to AssumeRole."""
    role_session_name: str | None = None
    """RoleSessionName for AssumeRole (default `vaultd-PROFILE`)."""
    region: str | None = None
    """The STS region (default us-east-1; endpoints follow the usual AWS settings)."""
    approval: ApprovalMethod = ApprovalMethod.CODE
    """`code` (type the MFA code), `touch` (FIDO2 touch; the code comes from a sealed seed)
    or `touch-or-code`. A role with `source_profile` and no `approval` of its own is approved
    like its source profile."""
    assume_root_account: str | None = None
    """Break-glass with sts:AssumeRoot: the 12-digit member account to open a root session in
    (with `source_profile`, an IAM user of the management or delegated-admin account)."""
    assume_root_task: str | None = None
    """The AssumeRoot task: IAMAuditRootUserCredentials, IAMCreateRootUserPassword,
    IAMDeleteRootUserCredentials, S3UnlockBucketPolicy or SQSUnlockQueuePolicy (or the full
    arn:aws:iam::aws:policy/root-task/NAME); `duration_seconds` is then 0-900 (default 900)."""

    @property
    def assume_root(self) -> bool:
        """Whether this is an AssumeRoot (break-glass only) profile."""
        return self.assume_root_account is not None or self.assume_root_task is not None

    @field_validator("credentials", "source_profile")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not PROFILE_NAME_RE.match(value):
            raise ValueError("must match [A-Za-z0-9._-]{1,64}")
        return value

    @field_validator("mfa_serial")
    @classmethod
    def _serial(cls, value: str | None) -> str | None:
        if value is not None and not SERIAL_RE.match(value):
            raise ValueError("must be an MFA device ARN or serial, 9-256 chars of [\\w+=/:,.@-]")
        return value

    @field_validator("role_arn")
    @classmethod
    def _role_arn(cls, value: str | None) -> str | None:
        if value is not None and not ROLE_ARN_RE.match(value):
            raise ValueError("must be an IAM role ARN, arn:aws:iam::123456789012:role/NAME")
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not REGION_RE.match(value):
            raise ValueError("must be an AWS region name such as eu-west-1")
        return value

    @field_validator("role_session_name")
    @classmethod
    def _session_name(cls, value: str | None) -> str | None:
        if value is not None and not SESSION_NAME_RE.match(value):
            raise ValueError("must be 2-64 chars of [\\w+=,.@-]")
        return value

    @field_validator("external_id")
    @classmethod
    def _external_id(cls, value: str | None) -> str | None:
        if value is not None and not EXTERNAL_ID_RE.match(value):
            raise ValueError("must be 2-1224 chars of [\\w+=,.@:/-]")
        return value

    @field_validator("assume_root_task")
    @classmethod
    def _task(cls, value: str | None) -> str | None:
        return None if value is None else _config_value(assume_root.task_arn, value)

    @model_validator(mode="after")
    def _shape(self) -> ProfileSettings:
        if self.assume_root:
            return self._assume_root_shape()
        if self.credentials and self.source_profile:
            raise ValueError("set either credentials or source_profile, not both")
        if not self.credentials and not self.source_profile:
            raise ValueError("set credentials (a stored key pair) or source_profile")
        if self.credentials and not self.mfa_serial:
            raise ValueError(
                "mfa_serial is required: vaultd makes every session with MFA "
                "(arn:aws:iam::ACCOUNT:mfa/NAME)"
            )
        if self.source_profile and not self.role_arn:
            raise ValueError("source_profile needs role_arn")
        kind = ProfileKind.ROLE if self.role_arn else ProfileKind.SESSION
        try:  # the core's ranges; chaining is decided by the duration itself
            validate_duration(kind, self.duration_seconds, chained=False)
        except ConfigError as exc:
            raise ValueError(exc.message) from None
        return self

    def _assume_root_shape(self) -> ProfileSettings:
        if not (self.source_profile and self.assume_root_account and self.assume_root_task):
            raise ValueError(
                "an AssumeRoot profile needs source_profile, assume_root_account and "
                "assume_root_task"
            )
        extra = [
            name
            for name in ("credentials", "role_arn", "mfa_serial", "external_id", "region")
            if getattr(self, name) is not None
        ]
        if extra:
            raise ValueError(
                f"{', '.join(extra)}: not used by an AssumeRoot profile (the source profile's "
                "keys, MFA device and region are)"
            )
        duration = (
            assume_root.DEFAULT_SECONDS if self.duration_seconds is None else self.duration_seconds
        )
        _config_value(assume_root.check_target, self.assume_root_account or "", duration, None)
        return self


class Settings(BaseSettings):
    """All of vaultd's settings."""

    model_config = SettingsConfigDict(
        env_prefix="VAULTD_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )

    data_dir: Path = Field(default_factory=default_data_dir)
    """Sealed store, state and audit log (0700); default `$XDG_DATA_HOME/vaultd`."""
    socket: Path = Field(default_factory=default_socket)
    """The daemon's socket; default `$XDG_RUNTIME_DIR/vaultd/vaultd.sock`. Clients also read
    `VAULTD_SOCKET`; `vaultd setup aws-profile` writes it into the AWS config."""
    policy_file: Path | None = None
    """A JSON IAM-style policy document; the shipped default applies without it."""
    keystore: str = Field("pkcs11", pattern=KEYSTORE_RE.pattern)
    """Where the vault key lives: `pkcs11` (a token, the default) or the entry-point name of
    a `vaultd.keystore` plugin, also listed in `plugins.allow` as `keystore/NAME`, such as
    `keyring`: a SOFTWARE key store, weaker than a token (the key is as safe as this account)
    and refused when `pkcs11.module` is set."""
    keystore_key_label: str = Field("vaultd-kek", min_length=1, max_length=64)
    """The key's name in a key store plugin (its audit key and store generation are kept
    beside it)."""
    pkcs11: Pkcs11Settings = Pkcs11Settings()
    ipc: IpcSettings = IpcSettings()
    cache: CacheSettings = CacheSettings()
    approval: ApprovalSettings = ApprovalSettings()
    fido2: Fido2Settings = Fido2Settings()
    plugins: PluginSettings = PluginSettings()
    audit: AuditSettings = AuditSettings()
    report: ReportSettings = ReportSettings()
    profiles: dict[str, ProfileSettings] = Field(default_factory=dict)
    """One `[profiles.NAME]` table per profile (see below)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=default_config_path())
        return (init_settings, env_settings, toml)

    @model_validator(mode="after")
    def _keystore(self) -> Settings:
        if self.keystore == "pkcs11":
            return self
        if self.pkcs11.module:
            raise ValueError(
                f"keystore = {self.keystore!r} names a key store plugin but pkcs11.module is "
                "set: vaultd never falls back from a token; remove keystore to use the token "
                "or remove pkcs11.module"
            )
        if not allows(self.plugins.allow, Kind.KEYSTORE, self.keystore):
            raise ValueError(
                f"keystore = {self.keystore!r} must also be listed in plugins.allow as "
                f'"keystore/{self.keystore}" (plugins load only when allowlisted)'
            )
        return self

    @model_validator(mode="after")
    def _profiles(self) -> Settings:
        for name, profile in self.profiles.items():
            if not PROFILE_NAME_RE.match(name):
                raise ValueError(f"profile name {name!r} must match [A-Za-z0-9._-]{{1,64}}")
            if profile.source_profile is None:
                continue
            source = self.profiles.get(profile.source_profile)
            if source is None:
                raise ValueError(
                    f"profiles.{name}.source_profile={profile.source_profile!r} is not a profile"
                )
            if source.credentials is None:
                raise ValueError(
                    f"profiles.{name}.source_profile={profile.source_profile!r} must name a "
                    "profile with stored credentials (role-of-role chains are not supported)"
                )
            if profile.assume_root:
                _check_assume_root_source(name, profile, source)
            elif "approval" not in profile.model_fields_set:
                # A chained role is approved the way its source profile is, unless it says.
                self.profiles[name] = profile.model_copy(update={"approval": source.approval})
        return self

    @property
    def audit_path(self) -> Path:
        """Where the audit log is written."""
        return self.audit.path or self.data_dir / "audit.log"


def _config_value(check: Any, *args: Any) -> Any:
    """Run a core check, turning its ``ConfigError`` into the ``ValueError`` pydantic reports."""
    try:
        return check(*args)
    except ConfigError as exc:
        raise ValueError(exc.message) from None


def _check_assume_root_source(name: str, profile: ProfileSettings, source: ProfileSettings) -> None:
    """The source of an AssumeRoot profile: an IAM user with an MFA device, not root, and not
    in the target account."""
    where = f"profiles.{name}.source_profile={profile.source_profile!r}"
    if source.mfa_serial is None:
        raise ValueError(f"{where} has no mfa_serial: AssumeRoot needs a fresh MFA session")
    if assume_root.is_root_mfa(source.mfa_serial):
        raise ValueError(
            f"{where} is a root profile (its mfa_serial is a root MFA device): AssumeRoot is "
            "refused for root credentials; use an IAM user of the management account"
        )
    duration = assume_root.DEFAULT_SECONDS
    try:
        assume_root.check_target(profile.assume_root_account or "", duration, source.mfa_serial)
    except ConfigError as exc:
        raise ValueError(f"profiles.{name}.{exc.message}") from None


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc if part != "function-after")


def load_settings(**overrides: Any) -> Settings:
    """Load settings, turning every validation problem into one :class:`ConfigError` line."""
    path = default_config_path()
    if path.exists():
        _check_config_file(path)
    elif os.environ.get("VAULTD_CONFIG"):
        raise ConfigError(
            f"VAULTD_CONFIG names {path}, which does not exist: create it, fix the path, or "
            "unset VAULTD_CONFIG to use ~/.config/vaultd/config.toml"
        )
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = _location(err["loc"]) or "settings"
            value = err.get("input")
            shown = "" if isinstance(value, dict) else f" = {value!r}"
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{where}{shown}: {msg}")
        raise ConfigError(f"invalid config ({path}): " + "; ".join(problems)) from None
    except (OSError, ValueError) as exc:  # TOML syntax errors are ValueErrors
        raise ConfigError(f"cannot read config {path}: {exc}") from None


def _check_config_file(path: Path) -> None:
    check_owned_not_writable(path)
