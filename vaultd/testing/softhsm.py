"""Throw-away SoftHSM2 tokens for tests and ``vaultd demo``.

SoftHSM2 is a software token: its token files plus the PIN *are* the key. Use it for tests and
demos only. ``softhsm2-util`` takes the PINs in argv; that is accepted here, and only here,
because the tokens are disposable and the process lives for a few milliseconds. The daemon never
puts a PIN in argv.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pkcs11

from vaultd.errors import HsmError

log = logging.getLogger(__name__)

SOFTHSM_MODULE_PATHS: tuple[str, ...] = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)

CONF_NAME = "softhsm2.conf"


@dataclass(frozen=True, slots=True)
class SoftHsmToken:
    """A SoftHSM2 token made by :func:`create_token` (test and demo PINs, not secrets)."""

    conf_path: Path
    module_path: str
    label: str
    user_pin: str = field(repr=False)
    so_pin: str = field(repr=False)


def find_softhsm_module() -> str | None:
    """Path of the first installed ``libsofthsm2.so`` among the usual places, or ``None``."""
    for path in SOFTHSM_MODULE_PATHS:
        if os.path.isfile(path):
            return path
    return None


def write_conf(directory: Path) -> Path:
    """Write a ``softhsm2.conf`` keeping tokens under ``directory/tokens``; return its path."""
    token_dir = directory / "tokens"
    token_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    conf = directory / CONF_NAME
    conf.write_text(
        f"directories.tokendir = {token_dir}\n"
        "objectstore.backend = file\n"
        "objectstore.umask = 0077\n"
        "slots.removable = false\n"
        "log.level = ERROR\n"
    )
    return conf


def create_token(
    directory: Path,
    *,
    label: str = "vaultd-test",
    user_pin: str | None = None,
    so_pin: str | None = None,
    module_path: str | None = None,
) -> SoftHsmToken:
    """Initialise a new SoftHSM2 token in ``directory`` (random PINs unless given).

    Calling it again with the same ``directory`` adds another token to the same configuration.
    ``SOFTHSM2_CONF`` is set for the child only: point this process at ``conf_path`` and call
    :func:`reinitialize` before opening the token.
    """
    module = module_path or find_softhsm_module()
    util = shutil.which("softhsm2-util")
    if module is None or util is None:
        raise HsmError("SoftHSM2 is not installed; install the softhsm2 package")
    log.critical("SoftHSM2 token %r created: a software token for tests and demos only", label)
    conf = directory / CONF_NAME
    if not conf.exists():
        conf = write_conf(directory)
    user = user_pin if user_pin is not None else secrets.token_hex(8)
    so = so_pin if so_pin is not None else secrets.token_hex(8)
    argv = [util, "--init-token", "--free", "--label", label, "--so-pin", so, "--pin", user]
    result = subprocess.run(
        argv,
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise HsmError(
            f"softhsm2-util could not create token {label!r} (exit {result.returncode}): "
            f"{result.stderr.strip()}"
        )
    return SoftHsmToken(conf_path=conf, module_path=module, label=label, user_pin=user, so_pin=so)


def reinitialize(module_path: str) -> None:
    """Make python-pkcs11's per-process cached module re-read ``SOFTHSM2_CONF`` and its tokens.

    This finalizes the module: every open session of it in this process is closed.
    """

    pkcs11.lib(module_path).reinitialize()
