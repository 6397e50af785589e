"""Console sign-in through the AWS federation endpoint.

A role session (AssumeRole or GetFederationToken credentials; AWS refuses GetSessionToken
sessions) is exchanged for a sign-in token with ``Action=getSigninToken``, and the token goes
into an ``Action=login`` URL that opens the console.  The sign-in token and the login URL are
credentials: the URL signs anyone in for 15 minutes.  URL building is pure;
:func:`get_signin_token` makes the one HTTPS call.
"""

from __future__ import annotations

import ipaddress
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from urllib.parse import urlencode, urlsplit

from vaultd.core.model import SessionCredentials
from vaultd.errors import ConfigError, FederationFailed

DEFAULT_ENDPOINT = "https://signin.aws.amazon.com/federation"
ENDPOINT_VARIABLE = "VAULTD_FEDERATION_URL"
CONSOLE_URL = "https://console.aws.amazon.com/"
ISSUER = "vaultd"
SESSION_DURATION_RANGE = (900, 43_200)
"""``SessionDuration`` bounds of getSigninToken (console session length in seconds)."""
TIMEOUT = 15.0
MAX_REPLY = 64 * 1024


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoint(environ: Mapping[str, str]) -> str:
    """The federation endpoint: ``$VAULTD_FEDERATION_URL`` or the AWS one.

    It must be ``https://``; plain ``http://`` is accepted only on a loopback host (a local
    stand-in for tests).
    """
    url = environ.get(ENDPOINT_VARIABLE) or DEFAULT_ENDPOINT
    parts = urlsplit(url)
    host = parts.hostname or ""
    secure = parts.scheme == "https" or (parts.scheme == "http" and _loopback(host))
    if not host or not secure or parts.query or parts.fragment or parts.username:
        raise ConfigError(
            f"{ENDPOINT_VARIABLE} must be an https:// URL without query or credentials "
            "(http:// only on 127.0.0.1 or localhost)"
        )
    return url


def session_document(creds: SessionCredentials) -> str:
    """The ``Session`` parameter: JSON with sessionId, sessionKey and sessionToken."""
    return json.dumps(
        {
            "sessionId": creds.access_key_id,
            "sessionKey": creds.secret_access_key,
            "sessionToken": creds.session_token,
        }
    )


def check_session_duration(seconds: int) -> int:
    """``seconds`` if it is a valid ``SessionDuration``, else ``ConfigError``."""
    low, high = SESSION_DURATION_RANGE
    if not low <= seconds <= high:
        raise ConfigError(f"the console session duration must be {low}-{high} s, not {seconds}")
    return seconds


def signin_token_url(base: str, creds: SessionCredentials, duration: int | None = None) -> str:
    """The ``Action=getSigninToken`` request URL (it carries the session: never show it)."""
    params = [("Action", "getSigninToken")]
    if duration is not None:
        params.append(("SessionDuration", str(check_session_duration(duration))))
    params.append(("Session", session_document(creds)))
    return f"{base}?{urlencode(params)}"


def parse_signin_token(body: bytes) -> str:
    """The ``SigninToken`` in the endpoint's JSON reply, or ``FederationFailed``."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    token = doc.get("SigninToken") if isinstance(doc, dict) else None
    if not isinstance(token, str) or not token:
        raise FederationFailed("the federation endpoint sent a reply without a SigninToken")
    return token


def login_url(
    base: str, signin_token: str, *, destination: str = CONSOLE_URL, issuer: str = ISSUER
) -> str:
    """The ``Action=login`` URL that opens ``destination`` (a credential for 15 minutes)."""
    params = [
        ("Action", "login"),
        ("Issuer", issuer),
        ("Destination", destination),
        ("SigninToken", signin_token),
    ]
    return f"{base}?{urlencode(params)}"


def get_signin_token(
    base: str, creds: SessionCredentials, duration: int | None = None, *, timeout: float = TIMEOUT
) -> str:
    """Exchange a role session for a sign-in token at the federation endpoint ``base``."""

    request = urllib.request.Request(  # noqa: S310 - endpoint() allows https and loopback http
        signin_token_url(base, creds, duration),
        headers={"Accept": "application/json", "User-Agent": "vaultd"},
    )
    host = urlsplit(base).netloc
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310 - as above
            body: bytes = reply.read(MAX_REPLY + 1)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise FederationFailed(
            f"the federation endpoint {host} refused the session (HTTP {exc.code}): it accepts "
            "role sessions only, and may refuse a --duration for a chained role session"
        ) from None
    except urllib.error.URLError as exc:
        raise FederationFailed(
            f"cannot reach the federation endpoint {host}: {exc.reason}"
        ) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise FederationFailed(
            f"talking to the federation endpoint {host} failed: {reason}"
        ) from None
    if len(body) > MAX_REPLY:
        raise FederationFailed(f"the federation endpoint {host} sent an oversized reply")
    return parse_signin_token(body)
