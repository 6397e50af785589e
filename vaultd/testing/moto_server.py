"""moto on 127.0.0.1 for tests and the demo: in a thread or as a subprocess, with IAM helpers.

moto never checks SerialNumber or TokenCode and returns fixed example credentials for
GetSessionToken (docs/threat-model.md component facts), so tests assert what was *sent* through the
recorder (``/moto-api/recorder/...``).  The recording is kept in a private temporary directory that
is removed on exit, because it holds request bodies (TokenCode) and session-token headers.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pyotp

from vaultd.aws.sts import DEFAULT_REGION, isolated_session
from vaultd.system.running import Running

DEFAULT_ACCOUNT = "123456789012"
RECORDING_NAME = "recording.jsonl"
_START_TIMEOUT = 15.0


class _MotoApi:
    """Helpers shared by the threaded and the subprocess server; ``url`` is set by subclasses."""

    url: str

    def reset(self) -> None:
        """Forget every resource and recorded request."""
        self._post("/moto-api/reset")
        self._post("/moto-api/recorder/stop-recording")
        self._post("/moto-api/recorder/reset-recording")

    def start_recording(self) -> None:
        """Record every request from now on (recorder endpoints excluded)."""
        self._post("/moto-api/recorder/reset-recording")
        self._post("/moto-api/recorder/start-recording")

    def stop_recording(self) -> None:
        """Stop recording; what was recorded stays readable."""
        self._post("/moto-api/recorder/stop-recording")

    def recorded_requests(self) -> list[dict[str, Any]]:
        """Recorded requests, oldest first: ``method``, ``url``, ``headers``, ``body``, ``params``.

        ``params`` is the form-decoded body (first value of each key), e.g. ``Action``,
        ``SerialNumber``, ``TokenCode``.
        """
        text = _http(f"{self.url}/moto-api/recorder/download-recording").decode("utf-8")
        out: list[dict[str, Any]] = []
        for line in text.splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            body = entry.get("body") or ""
            if entry.get("body_encoded"):
                body = base64.b64decode(body).decode("utf-8", errors="replace")
            params = {k: v[0] for k, v in parse_qs(body).items()}
            out.append(
                {
                    "method": entry.get("method"),
                    "url": entry.get("url"),
                    "headers": entry.get("headers", {}),
                    "body": body,
                    "params": params,
                }
            )
        return out

    def create_user_with_key(self, name: str) -> tuple[str, str]:
        """Create IAM user ``name`` with an access key; return (access key id, secret)."""
        iam = self.client("iam")
        iam.create_user(UserName=name)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return str(key["AccessKeyId"]), str(key["SecretAccessKey"])

    def create_virtual_mfa(self, user: str) -> tuple[str, str]:
        """Create and enable a virtual MFA device for ``user``; return (serial ARN, base32 seed)."""
        iam = self.client("iam")
        device = iam.create_virtual_mfa_device(VirtualMFADeviceName=user)["VirtualMFADevice"]
        serial = str(device["SerialNumber"])
        raw = device["Base32StringSeed"]
        seed = raw.decode("ascii") if isinstance(raw, bytes) else str(raw)
        totp = pyotp.TOTP(seed)
        now = time.time()
        iam.enable_mfa_device(
            UserName=user,
            SerialNumber=serial,
            AuthenticationCode1=totp.at(now - totp.interval),
            AuthenticationCode2=totp.at(now),
        )
        return serial, seed

    def create_role(self, name: str, trust_account: str = DEFAULT_ACCOUNT) -> str:
        """Create a role that ``trust_account`` may assume with MFA; return its ARN."""
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{trust_account}:root"},
                    "Action": "sts:AssumeRole",
                    "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}},
                }
            ],
        }
        role = self.client("iam").create_role(
            RoleName=name, AssumeRolePolicyDocument=json.dumps(policy)
        )
        return str(role["Role"]["Arn"])

    def client(self, service: str) -> Any:
        """A botocore client for ``service`` on this server, with dummy credentials."""
        return isolated_session().create_client(
            service,
            region_name=DEFAULT_REGION,
            endpoint_url=self.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's dummy credentials
        )

    def _post(self, path: str) -> None:
        _http(f"{self.url}{path}", post=True)


class MotoServer(_MotoApi, Running):
    """moto's ``ThreadedMotoServer`` on 127.0.0.1 with a random port; a context manager.

    moto's recorder is one object per process; this points it at a private file while running.
    """

    def __init__(self) -> None:
        self._server: Any = None
        self._dir: str | None = None
        self._saved_location: str | None = None

    def start(self) -> None:
        """Start the server with a private recorder file."""
        # Lazy: moto takes seconds to import; MotoProcess users never need it here.
        from moto.moto_api import recorder
        from moto.server import ThreadedMotoServer

        self._dir = tempfile.mkdtemp(prefix="vaultd-moto-")
        self._saved_location = recorder._location
        recorder._location = os.path.join(self._dir, RECORDING_NAME)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        self.reset()

    def stop(self) -> None:
        """Stop the server and restore moto's recorder."""
        # Lazy: moto takes seconds to import; MotoProcess users never need it here.
        from moto.moto_api import recorder

        if self._server is not None:
            self._server.stop()
            self._server = None
        recorder.stop_recording()
        if self._saved_location is not None:
            recorder._location = self._saved_location
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


class MotoProcess(_MotoApi):
    """A ``moto_server`` subprocess (see :func:`moto_process`)."""

    def __init__(self, url: str, process: subprocess.Popen[bytes]) -> None:
        self.url = url
        self.process = process


@contextlib.contextmanager
def moto_process(port: int = 0) -> Iterator[MotoProcess]:
    """Run ``moto_server -H 127.0.0.1 -p PORT`` (via ``python -m moto.server``) until exit.

    ``port=0`` picks a free port.  Waits until the server answers; stops it on exit.
    """
    port = port or _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="vaultd-moto-") as private:
        env = dict(os.environ, MOTO_RECORDER_FILEPATH=str(Path(private, RECORDING_NAME)))
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_until_up(url, process)
            server = MotoProcess(url, process)
            server.reset()
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _http(url: str, *, post: bool = False, timeout: float = 10) -> bytes:
    """GET, or POST an empty body to, a moto URL on 127.0.0.1."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError("moto helpers only talk to http://127.0.0.1")
    request = urllib.request.Request(  # noqa: S310 - checked to be http://127.0.0.1 above
        url, data=b"" if post else None, method="POST" if post else "GET"
    )
    with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310 - as above
        body: bytes = reply.read()
        return body


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with status {process.returncode}")
        try:
            _http(f"{url}/moto-api/data.json", timeout=1)
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    raise RuntimeError(f"moto_server did not answer on {url} within {_START_TIMEOUT:.0f} s")
