"""The container-credentials endpoint behind ``vaultd exec --server``.

Instead of putting a session in a command's environment, ``vaultd exec --server`` serves it the
way botocore's container provider asks for it (``AWS_CONTAINER_CREDENTIALS_FULL_URI``), from a
thread of its own process on 127.0.0.1 with a random port.  A request must come from a process
of the user (the owner of the connecting socket in ``/proc/net/tcp{,6}``, else 403 and a warning
on stderr; docs/threat-model.md T30), name
``127.0.0.1:PORT`` or ``localhost:PORT`` as its ``Host`` (else 400: DNS rebinding), carry the
random bearer token in ``Authorization`` (compared in constant time, else 401), and be a ``GET``
(else 405) of :data:`PATH` exactly (else 404).  The session comes from the daemon and is fetched
again once fewer than 15 minutes remain; fetches are serialised, so a burst shares one approval.
"""

from __future__ import annotations

import hmac
import json
import secrets
import sys
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import cast

from vaultd.core import serving
from vaultd.core.model import SessionCredentials, utc
from vaultd.core.ports import Clock
from vaultd.credproc import Failure, fetch
from vaultd.errors import ProtocolError, VaultError
from vaultd.ipc.protocol import error_from_reply
from vaultd.system import tcp_owner
from vaultd.system.clock import SystemClock
from vaultd.system.running import Running

PATH = "/vaultd/credentials"
REQUEST_TIMEOUT = 5.0
"""Seconds a connection may take to send its request (slow clients are dropped)."""

REPLACED_VARIABLES = frozenset(
    {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_CREDENTIAL_EXPIRATION",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        # botocore prefers these two over FULL_URI and AUTHORIZATION_TOKEN:
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    }
)
"""Variables removed from the command's environment so that only the endpoint is used."""

Fetch = Callable[[], bytes]
"""Returns the profile's session as credential_process Version 1 JSON (as the daemon sends it)."""


def fetch_from_daemon(socket: str, profile: str, *, duration: int | None = None) -> bytes:
    """The session JSON for ``profile`` from the daemon (action ``exec``; ``duration`` asks for
    a session of that length).

    Approval prompts go to ``/dev/tty`` (see :mod:`vaultd.credproc`); a daemon error is raised as
    the matching :class:`~vaultd.errors.VaultError`.
    """

    try:
        return fetch(socket, profile, action="exec", duration=duration)
    except Failure as failure:
        raise error_from_reply({"code": failure.code, "message": failure.message}) from None


def parse_session(output: bytes) -> SessionCredentials:
    """The session in credential_process Version 1 JSON; ``ProtocolError`` if malformed."""
    try:
        doc = json.loads(output)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or doc.get("Version") != 1:
        raise ProtocolError("the daemon sent credentials that are not credential_process JSON")
    names = ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")
    values = [doc.get(name) for name in names]
    if not all(isinstance(v, str) and v for v in values):
        raise ProtocolError("the daemon sent credentials without a key id, secret or token")
    key_id, secret, token, expiration = cast(list[str], values)
    try:
        expires = datetime.fromisoformat(expiration)
    except ValueError:
        expires = None
    if expires is None or expires.tzinfo is None:
        raise ProtocolError("the daemon sent credentials with a malformed Expiration")
    return SessionCredentials(key_id, secret, token, utc(expires))


def container_body(creds: SessionCredentials) -> bytes:
    """The JSON botocore's container provider reads: key id, secret, ``Token``, ``Expiration``."""
    document = {
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key,
        "Token": creds.session_token,
        "Expiration": creds.expiration.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return json.dumps(document, separators=(",", ":")).encode("ascii")


class SessionSource:
    """The current session: fetched on first use and again once it is below the 15 min floor.

    Calls are serialised, so concurrent requests wait for one fetch (and one approval).  The
    daemon enforces the floor on what it sends, so a fresh session is served as it comes.
    """

    def __init__(self, fetch: Fetch, clock: Clock) -> None:
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._creds: SessionCredentials | None = None
        self.fetches = 0
        """How many times the daemon was asked."""

    def current(self) -> SessionCredentials:
        """The cached session while at least 15 minutes remain, else a fresh one."""
        with self._lock:
            creds = self._creds
            if creds is None or not serving.servable(creds, self._clock.now()):
                self._creds = None
                self.fetches += 1
                creds = self._creds = parse_session(self._fetch())
            return creds


def _warn_refused(uid: int | None) -> None:
    sys.stderr.write(tcp_owner.refusal_warning(uid, "the credential endpoint") + "\n")


class CredentialServer(Running):
    """The endpoint on 127.0.0.1 (bound at construction, served by :meth:`start`).

    ``on_refused`` is called with the uid of every other user's process that connected (403).
    """

    def __init__(
        self,
        fetch: Fetch,
        *,
        clock: Clock | None = None,
        on_refused: Callable[[int | None], None] = _warn_refused,
    ) -> None:
        self.source = SessionSource(fetch, clock or SystemClock())
        self.on_refused = on_refused
        self.token = secrets.token_urlsafe(32)
        self._httpd = _HttpServer(self)
        self.port: int = self._httpd.server_address[1]
        self.hosts = frozenset({f"127.0.0.1:{self.port}", f"localhost:{self.port}"})
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The value of ``AWS_CONTAINER_CREDENTIALS_FULL_URI``."""
        return f"http://127.0.0.1:{self.port}{PATH}"

    def environment(self, base: Mapping[str, str], profile: str) -> dict[str, str]:
        """``base`` without any other AWS credential source, pointing at this endpoint."""
        env = {k: v for k, v in base.items() if k not in REPLACED_VARIABLES}
        env.update(
            AWS_CONTAINER_CREDENTIALS_FULL_URI=self.url,
            AWS_CONTAINER_AUTHORIZATION_TOKEN=self.token,
            VAULTD_PROFILE=profile,
        )
        return env

    def start(self) -> None:
        """Serve requests in a background thread."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="vaultd-credential-server"
        )
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the listening socket (requests in flight are abandoned)."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: CredentialServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        """Drop the connection quietly: a traceback on the command's stderr helps nobody."""


class _Handler(BaseHTTPRequestHandler):
    server_version = "vaultd"
    sys_version = ""
    timeout = REQUEST_TIMEOUT

    def log_message(self, format: str, *args: object) -> None:
        """Requests are not logged."""

    def do_GET(self) -> None:
        self._answer()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def _answer(self) -> None:
        owner = cast(_HttpServer, self.server).owner
        allowed, uid = tcp_owner.is_own_user(self.connection)
        if not allowed:
            owner.on_refused(uid)
            self._reply(403, "FORBIDDEN", "this endpoint serves only its own user's processes")
            return
        hosts = self.headers.get_all("Host") or []
        if len(hosts) != 1 or hosts[0] not in owner.hosts:
            self._reply(400, "BAD_HOST", "the Host header must be 127.0.0.1:PORT or localhost:PORT")
            return
        tokens = self.headers.get_all("Authorization") or []
        given = tokens[0].encode("latin-1", "replace") if len(tokens) == 1 else b""
        if not hmac.compare_digest(given, owner.token.encode("ascii")):
            self._reply(401, "UNAUTHORIZED", "missing or wrong Authorization token")
            return
        if self.command != "GET":
            self._reply(405, "METHOD_NOT_ALLOWED", "only GET is allowed", allow="GET")
            return
        # The raw target: ``self.path`` has already folded a leading "//" into "/".
        if self.requestline.split()[1:2] != [PATH]:
            self._reply(404, "NOT_FOUND", "no such resource")
            return
        try:
            creds = owner.source.current()
        except VaultError as exc:
            self._reply(503, exc.code, exc.message)
            return
        self._send(200, container_body(creds))

    def _reply(self, status: int, code: str, message: str, *, allow: str | None = None) -> None:
        body = json.dumps({"Code": code, "Message": message}).encode()
        self._send(status, body, allow=allow)

    def _send(self, status: int, body: bytes, *, allow: str | None = None) -> None:
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if allow:
            self.send_header("Allow", allow)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
