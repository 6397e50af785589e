"""A throw-away vaultd installation: SoftHSM2 token, config, stored keys and a real daemon.

Used by the integration tests, the benchmarks and `vaultd demo`.  Everything lives in one
temporary directory; the daemon is a real ``vaultd serve`` subprocess, so hardening, signals
and the socket are exercised as in production.  Test and demo use only: the token PIN sits
in a 0600 file there (the ``file:`` PIN source).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import select
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaultd.system.running import Running
from vaultd.testing.softhsm import SoftHsmToken, create_token

log = logging.getLogger("vaultd.testing")

MFA_SERIAL = "arn:aws:iam::123456789012:mfa/alice"
ROLE_ARN = "arn:aws:iam::123456789012:role/Admin"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def render_toml(config: Mapping[str, Any]) -> str:
    """A small TOML writer for the nested dicts the harness builds (tables and scalars)."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in config.items():
        if isinstance(value, Mapping):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    while tables:
        name, table = tables.pop(0)
        scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
        if scalars or not table:
            lines.append(f"\n[{name}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in scalars.items())
        tables[:0] = [(f"{name}.{k}", v) for k, v in table.items() if isinstance(v, Mapping)]
    return "\n".join(lines) + "\n"


@dataclass
class Installation(Running):
    """A token, a config and a data dir in ``root``; ``env`` points vaultd at them."""

    root: Path
    token: SoftHsmToken
    config: dict[str, Any]
    sts_url: str | None = None
    daemon: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def socket(self) -> Path:
        return Path(self.config["socket"])

    @property
    def data_dir(self) -> Path:
        return Path(self.config["data_dir"])

    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    @property
    def env(self) -> dict[str, str]:
        """An environment for vaultd and aws commands that touches nothing outside ``root``."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AWS_", "VAULTD_")) and k != "SOFTHSM2_CONF"
        }
        env.update(
            SOFTHSM2_CONF=str(self.token.conf_path),
            VAULTD_CONFIG=str(self.config_path),
            VAULTD_SOCKET=str(self.socket),
            HOME=str(self.root / "home"),
            AWS_CONFIG_FILE=str(self.root / "aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(self.root / "aws-credentials"),
            AWS_EC2_METADATA_DISABLED="true",
        )
        if self.sts_url:
            env.update(AWS_ENDPOINT_URL_STS=self.sts_url, AWS_ENDPOINT_URL=self.sts_url)
        return env

    def write_config(self) -> None:
        """Write ``config`` as TOML (0600) and the AWS config with one stanza per profile."""
        self.config_path.write_text(render_toml(self.config))
        os.chmod(self.config_path, 0o600)
        stanzas = [
            f"[profile {name}]\ncredential_process = {sys.executable} -m vaultd "
            f"credential-process {name}\nregion = us-east-1\n"
            for name in self.config.get("profiles", {})
        ]
        (self.root / "aws-config").write_text("\n".join(stanzas))

    def vaultd(
        self, *args: str, input: bytes | None = None, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``python -m vaultd ARGS`` against this installation."""
        proc = subprocess.run(
            [sys.executable, "-m", "vaultd", *args],
            input=input,
            capture_output=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"vaultd {' '.join(args)} exited {proc.returncode}: {proc.stderr.decode()}"
            )
        return proc

    def add_key_pair(
        self, name: str, access_key_id: str, secret: str, *, root: bool = False, bind: bool = False
    ) -> None:
        """Seal a key pair through `vaultd add` (stdin JSON, never argv).

        ``bind`` binds it to the enrolled FIDO2 authenticators (a single one is allowed here).
        """
        body = json.dumps({"AccessKeyId": access_key_id, "SecretAccessKey": secret}).encode()
        flags = ["--root"] if root else []
        flags += ["--bind-fido2", "--allow-single-authenticator"] if bind else ["--no-bind-fido2"]
        self.vaultd("add", name, *flags, input=body)

    def start_daemon(self, *, wait: float = 15.0) -> subprocess.Popen[bytes]:
        """Start `vaultd serve` and wait until its socket answers."""
        log_file = open(self.root / "daemon.log", "ab")
        self.daemon = subprocess.Popen(
            [sys.executable, "-m", "vaultd", "serve"],
            env=self.env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log_file.close()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.daemon.poll() is not None:
                raise RuntimeError(f"vaultd serve exited {self.daemon.returncode}:\n{self.log()}")
            if self.socket.exists() and self.vaultd("status", check=False).returncode == 0:
                return self.daemon
            time.sleep(0.05)
        raise RuntimeError(f"vaultd serve did not answer within {wait} s:\n{self.log()}")

    def stop_daemon(self) -> int | None:
        """SIGTERM the daemon and wait; returns its exit status."""
        if self.daemon is None:
            return None
        if self.daemon.poll() is None:
            self.daemon.terminate()
            try:
                self.daemon.wait(10)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
        code, self.daemon = self.daemon.returncode, None
        return code

    def log(self) -> str:
        """The daemon's log so far."""
        path = self.root / "daemon.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop the daemon (the end of a ``with`` block)."""
        self.stop_daemon()


def create_installation(
    root: Path,
    *,
    profiles: Mapping[str, Mapping[str, Any]] | None = None,
    sts_url: str | None = None,
    extra: Mapping[str, Any] | None = None,
    token_label: str = "vaultd",  # noqa: S107 - a label, not a password
    token: SoftHsmToken | None = None,
) -> Installation:
    """A fresh token and config in ``root`` (which must exist), then `vaultd init`.

    ``token`` names another module's token (the emulated PIV card) instead of a new SoftHSM2
    one; its ``conf_path`` is then unused.
    """
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    (root / "home").mkdir(mode=0o700, exist_ok=True)
    token = token or create_token(root / "hsm", label=token_label)
    token_label = token.label
    pin_file = root / "pin"
    pin_file.write_text(token.user_pin)
    os.chmod(pin_file, 0o600)
    run_dir = root / "run"
    run_dir.mkdir(mode=0o700, exist_ok=True)
    config: dict[str, Any] = {
        "data_dir": str(root / "data"),
        "socket": str(run_dir / "vaultd.sock"),
        "pkcs11": {
            "module": token.module_path,
            "token_label": token_label,
            "pin_source": f"file:{pin_file}",
        },
        # Tests answer approvals with `approve_pending` (`vaultd approve`) from clients with no
        # terminal; pass extra={"approval": {"out_of_band": False}} to test the default.
        # Every harness client runs in a session of its own (no terminal), so the tests of
        # the cache use scope "user"; tests of approval scopes pass {"scope": "session"}.
        # No prompt dialog on a developer's desktop: tests of approval.prompt set it.
        "approval": {"out_of_band": True, "scope": "user", "prompt": "terminal"},
        "profiles": {
            name: dict(p)
            for name, p in (
                profiles
                or {
                    "dev": {"credentials": "dev", "mfa_serial": MFA_SERIAL},
                    "admin": {"source_profile": "dev", "role_arn": ROLE_ARN},
                }
            ).items()
        },
    }
    for key, value in (extra or {}).items():
        if isinstance(value, Mapping) and isinstance(config.get(key), dict):
            config[key].update(value)
        else:
            config[key] = value
    inst = Installation(root=root, token=token, config=config, sts_url=sts_url)
    inst.write_config()
    inst.vaultd("init", "--no-backup")
    return inst


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes (a guard against hangs, never a
    timing assertion); returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def read_until(fd: int, needle: bytes | None, timeout: float = 60.0) -> bytes:
    """Read a pty master until ``needle`` shows (``None``: until the child closes its side) or
    ``timeout`` passes (a guard against hangs, never a timing assertion); returns what was read.
    EIO, which Linux raises once the child has closed the pty, ends the read."""
    seen = b""
    deadline = time.monotonic() + timeout
    while (needle is None or needle not in seen) and time.monotonic() < deadline:
        if not select.select([fd], [], [], 0.1)[0]:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the pty
            break
        if not chunk:
            break
        seen += chunk
    return seen


def _take_the_terminal() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def spawn_in_pty(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: Path | None = None,
    *,
    controlling: bool = True,
    capture: bool = False,
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``argv`` in a new session with a fresh pty as its stdin (and its stdout and stderr
    unless ``capture``: then pipes); with ``controlling`` the pty is its /dev/tty.  Returns the
    process and the pty master, which the caller closes."""
    master, slave = os.openpty()
    out = subprocess.PIPE if capture else slave
    try:
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=slave,
            stdout=out,
            stderr=out,
            start_new_session=True,
            preexec_fn=_take_the_terminal if controlling else None,
        )
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    return proc, master


def approve_pending(
    inst: Installation, code: str, *, profile: str | None = None, wait: float = 15.0
) -> str:
    """Wait for a pending approval (for ``profile`` if given), approve it with ``code``."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        out = inst.vaultd("approvals", "--json").stdout
        pending: Sequence[dict[str, Any]] = json.loads(out)
        for item in pending:
            if profile is None or item["profile"] == profile:
                # Not checked: `vaultd approve` exits non-zero when the approved request then
                # fails (a reused or rejected code); the requester reports that too.
                inst.vaultd("approve", str(item["id"]), input=f"{code}\n".encode(), check=False)
                return str(item["id"])
        time.sleep(0.05)
    raise TimeoutError(f"no pending approval appeared within {wait} s:\n{inst.log()}")


def released_with_approval(
    inst: Installation, code: str, *, profile: str = "dev"
) -> tuple[dict[str, Any], bytes]:
    """`vaultd credential-process PROFILE` approved with ``code``: the credentials document it
    printed and its stderr. ``AssertionError`` (with stderr) if it did not succeed."""
    client = subprocess.Popen(
        [sys.executable, "-m", "vaultd", "credential-process", profile],
        env=inst.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    approve_pending(inst, code, profile=profile)
    out, err = client.communicate(timeout=60)  # a guard against a hang, not a timing check
    if client.returncode != 0:
        raise AssertionError(f"credential-process {profile} exited {client.returncode}: {err!r}")
    document: dict[str, Any] = json.loads(out)
    return document, err
