"""IAM access-key calls for rotation, and STS GetCallerIdentity to check a key works.

The only module that makes raw IAM calls.  Every call acts on the caller (no ``UserName``) and
signs with the credentials passed in, through :func:`vaultd.aws.sts.isolated_session` (no
config or credentials file, no ``AWS_PROFILE``).  Endpoints follow ``AWS_ENDPOINT_URL_IAM`` /
``AWS_ENDPOINT_URL_STS`` / ``AWS_ENDPOINT_URL`` unless given explicitly.  CreateAccessKey is sent
once and never retried: a retry after a lost reply could make a second key.  botocore is
imported inside the methods so that importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import re
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from vaultd.aws.sts import DEFAULT_REGION, isolated_session
from vaultd.core.model import LongTermCredentials, SessionCredentials, mask_key, utc
from vaultd.core.records import make_key_pair
from vaultd.errors import (
    AccessKeyLimit,
    BadRequest,
    ConfigError,
    IamAccessDenied,
    IamError,
    IamUnavailable,
    StsExpiredToken,
    StsKeyInvalid,
    VaultError,
)

if TYPE_CHECKING:
    from botocore.exceptions import ClientError
    from botocore.session import Session

Credentials = LongTermCredentials | SessionCredentials

PLAIN_ATTEMPTS = 3
CREATE_ATTEMPTS = 1

_ACCESS_DENIED = frozenset({"AccessDenied", "AccessDeniedException"})
_KEY_INVALID = frozenset({"InvalidClientTokenId", "SignatureDoesNotMatch"})
_EXPIRED = frozenset({"ExpiredToken", "ExpiredTokenException"})
_UNAVAILABLE = frozenset(
    {"Throttling", "ThrottlingException", "ServiceFailure", "ServiceUnavailable", "InternalError"}
)
_KEY_ID_RE = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{12,124}\b")


class AccessKeyInfo(NamedTuple):
    """One access key of the caller, as ListAccessKeys reports it (no secret)."""

    access_key_id: str
    status: str
    created: datetime


class Boto3IamClient:
    """CreateAccessKey, DeleteAccessKey, ListAccessKeys and GetCallerIdentity over botocore."""

    def __init__(
        self,
        *,
        connect_timeout: float = 5,
        read_timeout: float = 10,
        endpoint_url: str | None = None,
        sts_endpoint_url: str | None = None,
        region: str = DEFAULT_REGION,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._endpoints = {"iam": endpoint_url, "sts": sts_endpoint_url}
        self._region = region
        self._session: Session | None = None
        self._lock = threading.Lock()  # botocore sessions are not safe for concurrent use

    def create_access_key(self, creds: Credentials) -> LongTermCredentials:
        """Make a new access key for the caller; ``root`` follows long-term ``creds``."""
        response = self._call("iam", "CreateAccessKey", creds, {}, CREATE_ATTEMPTS)
        key = response.get("AccessKey")
        root = isinstance(creds, LongTermCredentials) and creds.root
        if isinstance(key, dict):
            with contextlib.suppress(BadRequest):
                return make_key_pair(key.get("AccessKeyId"), key.get("SecretAccessKey"), root=root)
        raise IamError(
            "CreateAccessKey returned no usable key; a key may have been made: check "
            "`aws iam list-access-keys` and delete any key vaultd did not store"
        )

    def delete_access_key(self, creds: Credentials, access_key_id: str) -> None:
        """Delete the caller's access key ``access_key_id``."""
        self._call("iam", "DeleteAccessKey", creds, {"AccessKeyId": access_key_id})

    def list_access_keys(self, creds: Credentials) -> list[AccessKeyInfo]:
        """The caller's access keys (IAM allows at most two, so there is no paging)."""
        response = self._call("iam", "ListAccessKeys", creds, {})
        out: list[AccessKeyInfo] = []
        for item in response.get("AccessKeyMetadata", []):
            key_id, status, created = (item.get(k) for k in ("AccessKeyId", "Status", "CreateDate"))
            if not (isinstance(key_id, str) and isinstance(status, str)):
                raise IamError("ListAccessKeys returned a key without an id or a status")
            if not isinstance(created, datetime):
                raise IamError("ListAccessKeys returned a key without a CreateDate")
            out.append(AccessKeyInfo(key_id, status, utc(created)))
        return out

    def get_caller_identity(self, creds: Credentials) -> str:
        """The ARN the credentials act as (STS GetCallerIdentity)."""
        response = self._call("sts", "GetCallerIdentity", creds, {})
        arn = response.get("Arn")
        if not isinstance(arn, str) or not arn:
            raise IamError("GetCallerIdentity returned no Arn")
        return arn

    def _call(
        self,
        service: str,
        action: str,
        creds: Credentials,
        params: dict[str, Any],
        attempts: int = PLAIN_ATTEMPTS,
    ) -> dict[str, Any]:
        # Lazy: botocore (heavy) loads on the first AWS call, not wherever vaultd.app is imported.
        from botocore import exceptions as bx
        from botocore import xform_name

        try:
            client = self._client(service, creds, attempts)
        except (bx.BotoCoreError, ValueError) as exc:
            raise ConfigError(
                f"cannot build an {service.upper()} client ({type(exc).__name__}); "
                f"check the region and the {service.upper()} endpoint URL"
            ) from None
        method = getattr(client, xform_name(action))
        try:
            return cast(dict[str, Any], method(**params))
        except bx.ClientError as exc:
            raise _translate(exc, action) from None
        except bx.ParamValidationError:
            raise ConfigError(f"{action} parameters failed botocore's checks") from None
        except (bx.ConnectionError, bx.HTTPClientError) as exc:
            raise IamUnavailable(
                f"{action} failed: AWS did not answer ({type(exc).__name__}); try again later"
            ) from None
        except bx.BotoCoreError as exc:
            raise IamError(f"{action} failed inside botocore ({type(exc).__name__})") from None

    def _client(self, service: str, creds: Credentials, attempts: int) -> Any:
        # Lazy: botocore (heavy) loads on the first AWS call, not wherever vaultd.app is imported.
        from botocore.config import Config

        token = creds.session_token if isinstance(creds, SessionCredentials) else None
        config = Config(
            connect_timeout=self._connect_timeout,
            read_timeout=self._read_timeout,
            retries={"total_max_attempts": attempts, "mode": "standard"},
        )
        with self._lock:
            if self._session is None:
                self._session = isolated_session()
            return self._session.create_client(
                service,
                region_name=self._region,
                endpoint_url=self._endpoints[service],
                aws_access_key_id=creds.access_key_id,
                aws_secret_access_key=creds.secret_access_key,
                aws_session_token=token,
                config=config,
            )


def _masked(text: str) -> str:
    return _KEY_ID_RE.sub(lambda m: mask_key(m.group(0)), text)


def _translate(exc: ClientError, action: str) -> VaultError:
    """Map an AWS error response of an IAM (or GetCallerIdentity) call to a vaultd error."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    if code in ("LimitExceeded", "LimitExceededException"):
        return AccessKeyLimit(
            "IAM allows two access keys per user: delete the unused one in the console or with "
            "`aws iam delete-access-key`, then rotate again"
        )
    if code in _ACCESS_DENIED:
        return IamAccessDenied(
            f"AWS denied {action}: the IAM policy may require MFA to manage your own access "
            "keys; rotate with an MFA session, or ask an administrator to allow it"
        )
    if code in _KEY_INVALID:
        return StsKeyInvalid(
            f"AWS did not accept the access key used for {action} ({code}): it is revoked, "
            "deleted or not yet in effect"
        )
    if code in _EXPIRED:
        return StsExpiredToken(f"the session used for {action} has expired; start again")
    aws_message = _masked(str(error.get("Message", "")))
    if code in _UNAVAILABLE or status >= 500:
        return IamUnavailable(
            f"{action} failed: AWS error {code or status}; try again later", aws_code=code
        )
    return IamError(
        f"{action} failed with AWS error {code or 'unknown'} (HTTP {status}): {aws_message}",
        aws_code=code,
    )
