"""The ``StsClient`` port over botocore: GetSessionToken and AssumeRole with an MFA context,
GetFederationToken, and AssumeRoot on the Regional endpoint.

The only module that makes raw STS calls.  Every call signs with the stored keys passed in,
through a botocore session that reads no config or credentials file and ignores
``AWS_PROFILE``; the endpoint still follows ``AWS_ENDPOINT_URL_STS``/``AWS_ENDPOINT_URL`` or
the explicit ``endpoint_url``.  MFA-bearing calls are sent once and never retried, because a
retry would resend a code that may already be spent (docs/threat-model.md T11, T19).  botocore is
imported inside the methods so that importing this module stays cheap.
"""

from __future__ import annotations

import os
import re
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import urlsplit

from vaultd.core.model import CODE_RE, LongTermCredentials, SessionCredentials
from vaultd.errors import (
    CodeMalformed,
    ConfigError,
    MfaRejected,
    StsAccessDenied,
    StsClockSkew,
    StsDuration,
    StsError,
    StsExpiredToken,
    StsKeyInvalid,
    StsRegionDisabled,
    StsThrottled,
    StsUnavailable,
    VaultError,
)

if TYPE_CHECKING:
    from botocore.exceptions import ClientError
    from botocore.session import Session

DEFAULT_REGION = "us-east-1"
SERIAL_RE = re.compile(r"[\w+=/:,.@-]{9,256}", re.ASCII)
GET_SESSION_TOKEN_DURATION = (900, 129_600)
ASSUME_ROLE_DURATION = (900, 43_200)
MFA_ATTEMPTS = 1
MAX_CREDENTIAL_CHARS = 48 * 1024
"""The most the three credential strings may hold together: their rendered
``credential_process`` document must fit the socket's 64 KiB reply frame (a unit test checks
it), else every later request would lose its connection.  Real STS replies are a few KiB."""
PLAIN_ATTEMPTS = 3

_ACCESS_DENIED = frozenset({"AccessDenied", "AccessDeniedException"})
_EXPIRED_TOKEN = frozenset({"ExpiredToken", "ExpiredTokenException"})
_KEY_INVALID = frozenset({"InvalidClientTokenId", "SignatureDoesNotMatch"})
_THROTTLED = frozenset({"Throttling", "ThrottlingException"})
_UNAVAILABLE = frozenset({"InternalFailure", "ServiceUnavailable", "InternalError"})
_POLICY = frozenset(
    {
        "PackedPolicyTooLarge",
        "PackedPolicyTooLargeException",
        "MalformedPolicyDocument",
        "MalformedPolicyDocumentException",
    }
)
_PARAM_NAME_RE = re.compile(r"parameter (\w+)")


class _StsApi(Protocol):
    """The slice of a botocore STS client this module calls."""

    def get_session_token(self, **kwargs: Any) -> dict[str, Any]: ...

    def assume_role(self, **kwargs: Any) -> dict[str, Any]: ...

    def get_federation_token(self, **kwargs: Any) -> dict[str, Any]: ...

    def assume_root(self, **kwargs: Any) -> dict[str, Any]: ...


GLOBAL_STS_HOST = "sts.amazonaws.com"
ASSUME_ROOT_DURATION = (0, 900)
FEDERATION_NAME_RE = re.compile(r"^[\w+=,.@-]{2,32}$")
FEDERATION_DURATION = (900, 129_600)
ALLOW_ALL_POLICY = (
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'
)
"""Passed to GetFederationToken: the session gets the intersection of this and the user's own
policies, i.e. exactly the user's permissions (without a policy it would get none)."""


def isolated_session() -> Session:
    """A botocore session that reads no config or credentials file and ignores AWS_PROFILE.

    Environment settings that are not about identity (endpoints, CA bundle, proxies) still apply.
    """
    # Lazy: botocore (heavy) loads on the first AWS call, not wherever vaultd.app is imported.
    from botocore.session import Session

    return Session(
        session_vars={
            "profile": (None, None, None, None),
            "config_file": (None, None, os.devnull, None),
            "credentials_file": (None, None, os.devnull, None),
        }
    )


class Boto3StsClient:
    """Implements the ``StsClient`` port with botocore; see the module docstring."""

    def __init__(
        self,
        *,
        connect_timeout: float = 5,
        read_timeout: float = 10,
        endpoint_url: str | None = None,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._endpoint_url = endpoint_url
        self._session: Session | None = None
        self._lock = threading.Lock()  # botocore sessions are not safe for concurrent use

    def get_session_token(
        self,
        credentials: LongTermCredentials,
        *,
        duration_seconds: int,
        serial_number: str | None,
        token_code: str | None,
        region: str | None,
    ) -> SessionCredentials:
        """GetSessionToken with the stored long-term keys, with MFA when a serial is given."""
        params = _mfa_params(serial_number, token_code)
        _check_duration("GetSessionToken", duration_seconds, GET_SESSION_TOKEN_DURATION)
        params["DurationSeconds"] = duration_seconds
        return self._call("GetSessionToken", params, credentials, region, token_code)

    def assume_role(
        self,
        credentials: LongTermCredentials | SessionCredentials,
        *,
        role_arn: str,
        role_session_name: str,
        duration_seconds: int,
        external_id: str | None,
        serial_number: str | None,
        token_code: str | None,
        region: str | None,
    ) -> SessionCredentials:
        """AssumeRole with long-term keys or session credentials; MFA when a serial is given."""
        params = _mfa_params(serial_number, token_code)
        _check_duration("AssumeRole", duration_seconds, ASSUME_ROLE_DURATION)
        params.update(
            RoleArn=role_arn, RoleSessionName=role_session_name, DurationSeconds=duration_seconds
        )
        if external_id is not None:
            params["ExternalId"] = external_id
        return self._call("AssumeRole", params, credentials, region, token_code)

    def get_federation_token(
        self,
        credentials: LongTermCredentials,
        *,
        name: str,
        duration_seconds: int,
        region: str | None,
    ) -> SessionCredentials:
        """GetFederationToken with the long-term keys (for console sign-in without a role).

        AWS takes no MFA on this call; vaultd asks for an approval before making it.
        """
        if not FEDERATION_NAME_RE.match(name):
            raise ConfigError(f"federated user name {name!r} must be 2-32 chars of [\\w+=,.@-]")
        _check_duration("GetFederationToken", duration_seconds, FEDERATION_DURATION)
        params: dict[str, Any] = {
            "Name": name,
            "DurationSeconds": duration_seconds,
            "Policy": ALLOW_ALL_POLICY,
        }
        return self._call("GetFederationToken", params, credentials, region, None)

    def assume_root_endpoint(self, region: str) -> str:
        """The endpoint AssumeRoot goes to: the configured one (``endpoint_url``, else
        ``AWS_ENDPOINT_URL_STS`` or ``AWS_ENDPOINT_URL``, as botocore reads them) unless it is
        the global endpoint; without one, ``https://sts.REGION.amazonaws.com`` whatever
        ``AWS_STS_REGIONAL_ENDPOINTS`` says."""

        configured = self._endpoint_url or _configured_sts_endpoint()
        if configured is None:
            suffix = ".cn" if region.startswith("cn-") else ""
            return f"https://sts.{region}.amazonaws.com{suffix}"
        if (urlsplit(configured).hostname or "").lower() == GLOBAL_STS_HOST:
            raise ConfigError(
                f"the STS endpoint is the global {configured}: AWS accepts AssumeRoot only on a "
                f"Regional endpoint; unset it or use https://sts.{region}.amazonaws.com"
            )
        return configured

    def assume_root(
        self,
        credentials: SessionCredentials,
        *,
        target_principal: str,
        task_policy_arn: str,
        duration_seconds: int,
        region: str,
    ) -> SessionCredentials:
        """AssumeRoot with an MFA session, on the Regional endpoint, sent once."""
        _check_duration("AssumeRoot", duration_seconds, ASSUME_ROOT_DURATION)
        params: dict[str, Any] = {
            "TargetPrincipal": target_principal,
            "TaskPolicyArn": {"arn": task_policy_arn},
            "DurationSeconds": duration_seconds,
        }
        endpoint = self.assume_root_endpoint(region)
        return self._call(
            "AssumeRoot", params, credentials, region, None, endpoint_url=endpoint, attempts=1
        )

    def _call(
        self,
        action: str,
        params: dict[str, Any],
        credentials: LongTermCredentials | SessionCredentials,
        region: str | None,
        token_code: str | None,
        *,
        endpoint_url: str | None = None,
        attempts: int | None = None,
    ) -> SessionCredentials:
        # Lazy: botocore (heavy) loads on the first AWS call, not wherever vaultd.app is imported.
        from botocore import exceptions as bx

        mfa = token_code is not None
        region = region or DEFAULT_REGION
        attempts = attempts or (MFA_ATTEMPTS if mfa else PLAIN_ATTEMPTS)
        try:
            api = self._client(credentials, region, attempts, endpoint_url or self._endpoint_url)
        except (bx.BotoCoreError, ValueError) as exc:
            raise ConfigError(
                f"cannot build an STS client for region {region!r} ({type(exc).__name__}); "
                "check the region and the STS endpoint URL"
            ) from None
        send = {
            "GetSessionToken": api.get_session_token,
            "AssumeRole": api.assume_role,
            "GetFederationToken": api.get_federation_token,
            "AssumeRoot": api.assume_root,
        }[action]
        try:
            response = send(**params)
        except bx.ClientError as exc:
            raise _translate(exc, action, region, token_code) from None
        except bx.ParamValidationError as exc:
            names = sorted(set(_PARAM_NAME_RE.findall(str(exc))))
            raise ConfigError(
                f"{action} parameters {', '.join(names) or '(unknown)'} failed botocore's "
                "checks before sending; fix the profile's settings"
            ) from None
        except (bx.ConnectionError, bx.HTTPClientError) as exc:
            raise StsUnavailable(
                _unavailable(action, mfa, f"STS did not answer ({type(exc).__name__})")
            ) from exc
        except bx.BotoCoreError as exc:
            raise StsError(f"{action} failed inside botocore ({type(exc).__name__})") from None
        except ValueError:
            # botocore's timestamp parser raises ValueError on a malformed Expiration.
            raise StsError(
                f"{action} returned a malformed response; nothing was stored or served"
            ) from None
        return _parse(action, response)

    def _client(
        self,
        credentials: LongTermCredentials | SessionCredentials,
        region: str,
        max_attempts: int,
        endpoint_url: str | None,
    ) -> _StsApi:
        # Lazy: botocore (heavy) loads on the first AWS call, not wherever vaultd.app is imported.
        from botocore.config import Config

        token = credentials.session_token if isinstance(credentials, SessionCredentials) else None
        config = Config(
            connect_timeout=self._connect_timeout,
            read_timeout=self._read_timeout,
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
        )
        with self._lock:
            if self._session is None:
                self._session = isolated_session()
            client = self._session.create_client(
                "sts",
                region_name=region,
                endpoint_url=endpoint_url,
                aws_access_key_id=credentials.access_key_id,
                aws_secret_access_key=credentials.secret_access_key,
                aws_session_token=token,
                config=config,
            )
        return cast(_StsApi, client)


def _configured_sts_endpoint() -> str | None:
    """The STS endpoint the environment configures (the isolated session reads no file)."""
    if os.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
        return None
    return os.environ.get("AWS_ENDPOINT_URL_STS") or os.environ.get("AWS_ENDPOINT_URL") or None


def _mfa_params(serial_number: str | None, token_code: str | None) -> dict[str, Any]:
    """Check the MFA pair locally; an empty dict when neither is given."""
    if serial_number is None and token_code is None:
        return {}
    if serial_number is None or token_code is None:
        raise ConfigError(
            "an MFA serial and a token code must be given together; check the profile"
        )
    if not SERIAL_RE.fullmatch(serial_number):
        raise ConfigError(
            "mfa_serial must be 9-256 characters of letters, digits and +=/:,.@_- "
            "(a device serial or an MFA device ARN); fix the profile"
        )
    if not CODE_RE.fullmatch(token_code):
        raise CodeMalformed("the MFA code must be exactly six digits 0-9; enter the code again")
    return {"SerialNumber": serial_number, "TokenCode": token_code}


def _check_duration(action: str, seconds: int, bounds: tuple[int, int]) -> None:
    low, high = bounds
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not low <= seconds <= high:
        raise StsDuration(
            f"{action} DurationSeconds must be an integer from {low} to {high}, got {seconds!r}; "
            "fix duration_seconds in the profile"
        )


def _unavailable(action: str, mfa: bool, what: str) -> str:
    tail = (
        "; the MFA code is spent: wait for a fresh code and try again"
        if mfa
        else "; try again later"
    )
    return f"{action} failed: {what}{tail}"


def _scrub(text: str, token_code: str | None) -> str:
    return text.replace(token_code, "******") if token_code else text


def _translate(exc: ClientError, action: str, region: str, token_code: str | None) -> VaultError:
    """Map an AWS error response to the matching vaultd error (docs/threat-model.md AWS
    contract)."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    aws_message = _scrub(str(error.get("Message", "")), token_code)
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    mfa = token_code is not None
    if code in _ACCESS_DENIED:
        if mfa:
            return MfaRejected(
                f"AWS rejected the MFA code for {action}; wait for the next code and try again"
            )
        if action == "AssumeRoot":
            return StsAccessDenied(
                "AWS denied AssumeRoot: the source user needs sts:AssumeRoot on the member "
                "account (with MFA), and centralized root access must be enabled in IAM"
            )
        return StsAccessDenied(
            f"AWS denied {action}; check the role's trust policy and the user's permissions"
        )
    if code in _EXPIRED_TOKEN:
        return StsExpiredToken(
            f"the session credentials used for {action} have expired; drop the cached session "
            "and refresh it"
        )
    if code in _KEY_INVALID:
        return StsKeyInvalid(
            f"AWS did not accept the stored access key for {action} ({code}): stored key revoked "
            "or rotated; store the current key again"
        )
    if code == "RequestExpired":
        return StsClockSkew(
            f"AWS refused {action} as signed too far from its time; check the system clock (NTP)"
        )
    if code == "RegionDisabledException":
        return StsRegionDisabled(
            f"STS is not activated in region {region}; activate it in the IAM account settings "
            "or set another region for the profile"
        )
    if code in _THROTTLED:
        again = "with a fresh MFA code" if mfa else "later"
        return StsThrottled(f"STS throttled {action}; wait a moment and try again {again}")
    if code in _UNAVAILABLE or status >= 500:
        return StsUnavailable(_unavailable(action, mfa, f"STS error {code or status}"))
    if code == "ValidationError" and "duration" in aws_message.lower():
        return StsDuration(
            f"AWS rejected the DurationSeconds of {action}: {aws_message}; lower duration_seconds "
            "(role chaining allows at most 3600)"
        )
    if code == "ValidationError" or code in _POLICY:
        return ConfigError(f"AWS rejected the {action} request ({code}): {aws_message}")
    return StsError(
        f"{action} failed with AWS error {code or 'unknown'} (HTTP {status}): {aws_message}"
    )


def _parse(action: str, response: dict[str, Any]) -> SessionCredentials:
    """Turn a response into ``SessionCredentials``; refuse missing, malformed or past values."""
    creds = response.get("Credentials")
    if not isinstance(creds, dict):
        raise StsError(f"{action} returned no Credentials; nothing was stored or served")
    fields = [creds.get(k) for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")]
    expiration = creds.get("Expiration")
    strings = [f for f in fields if isinstance(f, str) and f]
    if len(strings) != len(fields) or not isinstance(expiration, datetime):
        raise StsError(f"{action} returned incomplete Credentials; nothing was stored or served")
    size = sum(len(f) for f in strings)
    if size > MAX_CREDENTIAL_CHARS or not all(f.isascii() and f.isprintable() for f in strings):
        raise StsError(
            f"{action} returned Credentials (SessionToken and keys) of {size} characters, not "
            f"printable ASCII within {MAX_CREDENTIAL_CHARS}, which vaultd cannot serve; check "
            "the STS endpoint; nothing was stored or served"
        )
    if expiration.tzinfo is None:
        raise StsError(f"{action} returned an Expiration without a time zone; nothing was served")
    expiration = expiration.astimezone(UTC)
    if expiration <= datetime.now(UTC):
        raise StsError(
            f"{action} returned credentials that expired at {expiration:%Y-%m-%dT%H:%M:%SZ}; "
            "check the system clock; nothing was stored or served"
        )
    return SessionCredentials(strings[0], strings[1], strings[2], expiration)
