"""A local STS endpoint for tests that records every request and injects faults.

``FakeSts`` speaks the STS Query protocol (form-encoded POST, XML replies) for GetSessionToken,
AssumeRole, GetFederationToken, GetCallerIdentity and AssumeRoot on 127.0.0.1 with a random
port.  It checks no signature and no MFA code: it exists to count attempts and to script
errors, timeouts, resets and bad ``Expiration`` values that moto cannot produce.

moto does not implement AssumeRoot, so this stand-in validates it as AWS documents: only on a
Regional endpoint (``url``; ``global_url`` and a ``sts.amazonaws.com`` Host header play the
global endpoint, and a ``sts.REGION.amazonaws.com`` Host must match the SigV4 scope region), a
task policy from the five root-task ARNs, ``DurationSeconds`` 0-900, a member account other
than ``account`` (the management account), never with root credentials (keys registered with
:meth:`FakeSts.add_root_key`, and the sessions made from them), and only with a session this
stand-in issued from GetSessionToken or AssumeRole with SerialNumber and TokenCode.
Never point real keys at it.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from vaultd.system.running import Running

ACCOUNT = "123456789012"
NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
ERROR_STATUS = {
    "AccessDenied": 403,
    "ExpiredToken": 403,
    "ExpiredTokenException": 400,
    "InternalFailure": 500,
    "InvalidClientTokenId": 403,
    "MalformedPolicyDocument": 400,
    "PackedPolicyTooLarge": 400,
    "RegionDisabledException": 403,
    "RequestExpired": 400,
    "ServiceUnavailable": 503,
    "SignatureDoesNotMatch": 403,
    "Throttling": 400,
    "ValidationError": 400,
}
DEFAULT_DURATION = {
    "GetSessionToken": 43_200,
    "AssumeRole": 3_600,
    "GetFederationToken": 43_200,
    "AssumeRoot": 900,
}
SUPPORTED = frozenset({*DEFAULT_DURATION, "GetCallerIdentity"})
ROOT_TASK_ARNS = frozenset(
    f"arn:aws:iam::aws:policy/root-task/{name}"
    for name in (
        "IAMAuditRootUserCredentials",
        "IAMCreateRootUserPassword",
        "IAMDeleteRootUserCredentials",
        "S3UnlockBucketPolicy",
        "SQSUnlockQueuePolicy",
    )
)
GLOBAL_HOST = "sts.amazonaws.com"
_CREDENTIAL_RE = re.compile(r"Credential=([^/,\s]+)/[^/]+/([^/]+)/")
_REGIONAL_HOST_RE = re.compile(r"^sts\.([a-z0-9-]+)\.amazonaws\.com$")
_ACCOUNT_RE = re.compile(r"^(?:[0-9]{12}|arn:aws[a-z-]*:iam::([0-9]{12}):root)$")


@dataclass(frozen=True, slots=True)
class Fault:
    """One scripted misbehaviour; the request is always recorded first.

    ``error_code`` answers with that AWS error (``status`` defaults from ``ERROR_STATUS``, else
    400); ``delay_seconds`` holds the reply back (a read timeout after send); ``drop_connection``
    resets the connection without a reply; ``expiration`` returns a past or malformed value;
    ``session_token_chars`` pads the SessionToken to that many characters (a hostile STS).
    """

    error_code: str | None = None
    status: int | None = None
    message: str = "Injected by FakeSts"
    delay_seconds: float = 0.0
    drop_connection: bool = False
    expiration: Literal["past", "malformed"] | None = None
    session_token_chars: int = 0


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """What one request carried (the Authorization header gives the access key id)."""

    action: str
    access_key_id: str | None
    region: str | None
    session_token_sent: bool
    serial_number: str | None
    token_code: str | None = field(repr=False)
    duration_seconds: int | None
    role_arn: str | None
    role_session_name: str | None
    external_id: str | None
    host: str = ""
    endpoint: Literal["regional", "global"] = "regional"
    target_principal: str | None = None
    task_policy_arn: str | None = None


@dataclass(slots=True)
class _Script:
    fault: Fault
    remaining: int | None
    action: str | None


class FakeSts(Running):
    """A threaded STS stand-in on ``url``; use as a context manager.

    ``latency`` (seconds) delays every reply.  Successful replies carry unique, counter-based
    credentials that expire ``DurationSeconds`` from now.
    """

    def __init__(self, *, latency: float = 0.0, account: str = ACCOUNT) -> None:
        self.latency = latency
        self.account = account
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._requests: list[RecordedRequest] = []
        self._scripts: list[_Script] = []
        self._issued = 0
        self._mfa_keys: set[str] = set()
        self._root_keys: set[str] = set()
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Listen on 127.0.0.1 with random ports: the Regional endpoint and the global one."""
        self._stopping.clear()
        for endpoint in ("regional", "global"):
            server = _Server(("127.0.0.1", 0), _Handler, self, endpoint)
            thread = threading.Thread(
                target=server.serve_forever, args=(0.05,), name=f"fake-sts-{endpoint}", daemon=True
            )
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)

    def stop(self) -> None:
        """Wake delayed replies, stop serving and close the sockets."""
        self._stopping.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join()
        self._servers, self._threads = [], []

    @property
    def url(self) -> str:
        """The (Regional) endpoint URL to hand to an STS client."""
        return self._url(0)

    @property
    def global_url(self) -> str:
        """An endpoint that behaves as the global ``sts.amazonaws.com``."""
        return self._url(1)

    def _url(self, index: int) -> str:
        if not self._servers:
            raise RuntimeError("FakeSts is not started")
        host, port = self._servers[index].server_address[:2]
        return f"http://{host!s}:{port}"

    def add_root_key(self, access_key_id: str) -> None:
        """Treat ``access_key_id`` as a root user's key (AssumeRoot refuses it and its sessions)."""
        with self._lock:
            self._root_keys.add(access_key_id)

    def inject(self, fault: Fault, *, times: int | None = 1, action: str | None = None) -> None:
        """Apply ``fault`` to the next ``times`` matching calls (``None``: until cleared)."""
        if times is not None and times < 1:
            raise ValueError("times must be at least 1, or None for every call")
        with self._lock:
            self._scripts.append(_Script(fault, times, action))

    def clear_faults(self) -> None:
        """Drop every scripted fault."""
        with self._lock:
            self._scripts.clear()

    def calls(self, action: str | None = None) -> int:
        """How many requests (of ``action``, or of any action) arrived."""
        with self._lock:
            return sum(1 for r in self._requests if action is None or r.action == action)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of every recorded request, oldest first."""
        with self._lock:
            return list(self._requests)

    def _admit(self, request: RecordedRequest) -> Fault | None:
        """Record ``request`` and consume the first fault scripted for it."""
        with self._lock:
            self._requests.append(request)
            for script in self._scripts:
                if script.action not in (None, request.action):
                    continue
                if script.remaining is not None:
                    script.remaining -= 1
                    if script.remaining == 0:
                        self._scripts.remove(script)
                return script.fault
        return None

    def _next_serial(self) -> int:
        with self._lock:
            self._issued += 1
            return self._issued

    def _issued_key(self, request: RecordedRequest, key_id: str) -> None:
        """Remember whether a session came with MFA and whether it is a root session."""
        with self._lock:
            if request.action in ("GetSessionToken", "AssumeRole") and request.token_code:
                self._mfa_keys.add(key_id)
            if request.access_key_id in self._root_keys and request.action != "AssumeRoot":
                self._root_keys.add(key_id)

    def assume_root_refusal(self, request: RecordedRequest) -> tuple[str, str] | None:
        """The AWS error (code, message) AssumeRoot gets for ``request``, or None."""
        with self._lock:
            root = request.access_key_id in self._root_keys
            mfa = request.access_key_id in self._mfa_keys
        target = _ACCOUNT_RE.match(request.target_principal or "")
        if request.endpoint == "global":
            return "InvalidAction", "AssumeRoot is available on Regional STS endpoints only"
        duration = request.duration_seconds
        if duration is not None and not 0 <= duration <= DEFAULT_DURATION["AssumeRoot"]:
            return "ValidationError", (
                f"Value '{duration}' at 'durationSeconds' failed to satisfy constraint: "
                "Member must have value less than or equal to 900"
            )
        if request.task_policy_arn not in ROOT_TASK_ARNS:
            return "ValidationError", "TaskPolicyArn must be an AWS managed root-task policy"
        if target is None:
            return "ValidationError", "TargetPrincipal must be a 12-digit account id"
        if self.account in (target.group(0), target.group(1)):
            return "AccessDenied", "AssumeRoot targets member accounts, not the management account"
        if root:
            return "AccessDenied", "Root credentials cannot call AssumeRoot"
        if not request.session_token_sent or not mfa:
            return "AccessDenied", "The caller's session was not authenticated with MFA"
        return None

    def _pause(self, seconds: float) -> bool:
        """Sleep unless stopping; True when the reply should still be sent."""
        return seconds <= 0 or not self._stopping.wait(seconds)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        fake: FakeSts,
        endpoint: Literal["regional", "global"],
    ) -> None:
        super().__init__(address, handler)
        self.fake = fake
        self.endpoint: Literal["regional", "global"] = endpoint


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet: tests read ``FakeSts.requests`` instead."""

    def do_POST(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode("utf-8")).items()}
        request = self._record(form)
        fault = fake._admit(request)
        if request.action not in SUPPORTED:
            self._reply(400, _error_xml("InvalidAction", "FakeSts does not implement this action"))
            return
        if not fake._pause(fake.latency):
            return
        if fault is not None and not fake._pause(fault.delay_seconds):
            return
        if fault is not None and fault.drop_connection:
            self._reset()
            return
        if fault is not None and fault.error_code is not None:
            status = fault.status or ERROR_STATUS.get(fault.error_code, 400)
            self._reply(status, _error_xml(fault.error_code, fault.message))
            return
        refusal = fake.assume_root_refusal(request) if request.action == "AssumeRoot" else None
        if refusal is not None:
            code, message = refusal
            self._reply(ERROR_STATUS.get(code, 400), _error_xml(code, message))
            return
        expiration = None if fault is None else fault.expiration
        xml = self._success_xml(request, expiration)
        if fault is not None and fault.session_token_chars:
            token = re.search(r"<SessionToken>([^<]*)</SessionToken>", xml)
            if token is not None:
                padded = token.group(1).ljust(fault.session_token_chars, "A")
                xml = xml.replace(token.group(1), padded, 1)
        self._reply(200, xml)

    def _record(self, form: dict[str, str]) -> RecordedRequest:
        match = _CREDENTIAL_RE.search(self.headers.get("Authorization", ""))
        duration = form.get("DurationSeconds")
        region = match.group(2) if match else None
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
        regional = _REGIONAL_HOST_RE.match(host)
        endpoint = self.server.endpoint
        if host == GLOBAL_HOST or (regional is not None and regional.group(1) != region):
            endpoint = "global"
        return RecordedRequest(
            action=form.get("Action", ""),
            access_key_id=match.group(1) if match else None,
            region=region,
            session_token_sent="X-Amz-Security-Token" in self.headers,
            serial_number=form.get("SerialNumber"),
            token_code=form.get("TokenCode"),
            duration_seconds=int(duration) if duration and duration.isdigit() else None,
            role_arn=form.get("RoleArn"),
            role_session_name=form.get("RoleSessionName"),
            external_id=form.get("ExternalId"),
            host=host,
            endpoint=endpoint,
            target_principal=form.get("TargetPrincipal"),
            task_policy_arn=form.get("TaskPolicyArn.arn"),
        )

    def _success_xml(self, request: RecordedRequest, expiration: str | None) -> str:
        fake = self.server.fake
        action = request.action
        if action == "GetCallerIdentity":
            body = (
                f"<Arn>arn:aws:iam::{fake.account}:user/fake</Arn>"
                f"<UserId>{escape(request.access_key_id or '')}</UserId>"
                f"<Account>{fake.account}</Account>"
            )
            return _envelope(action, body)
        n = fake._next_serial()
        seconds = request.duration_seconds or DEFAULT_DURATION[action]
        when = {
            "past": _timestamp(datetime.now(UTC) - timedelta(seconds=60)),
            "malformed": "not-a-timestamp",
            None: _timestamp(datetime.now(UTC) + timedelta(seconds=seconds)),
        }[expiration]
        fake._issued_key(request, f"ASIAFAKE{n:012d}")
        body = (
            "<Credentials>"
            f"<AccessKeyId>ASIAFAKE{n:012d}</AccessKeyId>"
            f"<SecretAccessKey>fakesecret{n:030d}</SecretAccessKey>"
            f"<SessionToken>FakeSessionToken/{n:08d}+fake=</SessionToken>"
            f"<Expiration>{when}</Expiration>"
            "</Credentials>"
        )
        if action == "GetFederationToken":
            body += (
                "<FederatedUser>"
                f"<Arn>arn:aws:sts::{fake.account}:federated-user/vaultd</Arn>"
                f"<FederatedUserId>{fake.account}:vaultd</FederatedUserId>"
                "</FederatedUser>"
            )
        if action == "AssumeRole":
            role = escape((request.role_arn or "role/unknown").rsplit("/", 1)[-1])
            name = escape(request.role_session_name or "")
            body += (
                "<AssumedRoleUser>"
                f"<Arn>arn:aws:sts::{fake.account}:assumed-role/{role}/{name}</Arn>"
                f"<AssumedRoleId>AROAFAKE{n:012d}:{name}</AssumedRoleId>"
                "</AssumedRoleUser>"
            )
        return _envelope(action, body)

    def _reply(self, status: int, xml: str) -> None:
        payload = xml.encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True  # the client gave up (a read timeout); nothing to do

    def _reset(self) -> None:
        """Close with a TCP reset instead of a reply."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _envelope(action: str, body: str) -> str:
    return (
        f'<{action}Response xmlns="{NAMESPACE}"><{action}Result>{body}</{action}Result>'
        "<ResponseMetadata><RequestId>fake-request</RequestId></ResponseMetadata>"
        f"</{action}Response>"
    )


def _error_xml(code: str, message: str) -> str:
    return (
        f'<ErrorResponse xmlns="{NAMESPACE}"><Error><Type>Sender</Type>'
        f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
        "<RequestId>fake-request</RequestId></ErrorResponse>"
    )
