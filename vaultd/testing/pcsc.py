"""A private pcscd with one emulated YubiKey in its reader, for tests and the demo.

How it is kept private (pcsc-lite 1.9.9, Debian 12):

- pcscd's socket (``/run/pcscd/pcscd.comm``) and pid file are compiled in; the daemon ignores
  ``PCSCLITE_CSOCK_NAME`` and refuses to start while another pcscd's pid file is there. So it runs
  in its own mount namespace (``unshare --mount``; ``--user --map-root-user`` too when not root)
  with ``DIR/run`` bound over ``/run``: its socket lands in ``DIR/run/pcscd/pcscd.comm`` and a
  system pcscd is untouched. USB hotplug finds nothing there (no ``/run/udev``), as wanted.
- Clients (libpcsclite, so pyscard, ykcs11 and OpenSC alike) read ``PCSCLITE_CSOCK_NAME`` once
  per process, on first use, and keep it: :func:`piv_stack` sets it, and every stack started in
  one process must use the same ``DIR``.
- ``pcscd -f -c DIR/conf`` reads every file in ``DIR/conf`` as reader.conf; ours names
  ``libifdvpcd.so`` with ``DEVICENAME /dev/null:PORT`` (a free port; vpcd listens there and our
  card connects, see :mod:`vaultd.testing.vpcd`). The reader is ``Yubico YubiKey vpcd 00 00``
  (pcscd appends the slot numbers): Debian's ykcs11 2.2 lists only readers whose name starts
  with "Yubico".
- A PKCS#11 module that was initialised while an earlier pcscd ran keeps a dead PC/SC context:
  reinitialise it (python-pkcs11 ``lib.reinitialize()``) after starting a new stack.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from vaultd.testing.piv_process import PivCardProcess
from vaultd.testing.vpcd import free_port_pair

READER_PREFIX = "Yubico YubiKey vpcd"
_LIB_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
)


def _first(patterns: list[str]) -> Path | None:
    for pattern in patterns:
        hits = sorted(glob.glob(pattern))
        if hits:
            return Path(hits[0])
    return None


def find_pcscd() -> Path | None:
    """The pcscd daemon (often in /usr/sbin, outside a user's PATH), or None."""
    found = shutil.which("pcscd") or shutil.which("pcscd", path="/usr/sbin:/usr/local/sbin")
    return Path(found) if found else None


def find_vpcd_driver() -> Path | None:
    """vsmartcard's vpcd reader driver, or None."""
    return _first([f"{d}/pcsc/drivers/serial/libifdvpcd.so*" for d in _LIB_DIRS])


def find_ykcs11() -> Path | None:
    """Yubico's ykcs11 PKCS#11 module, or None."""
    return _first([f"{d}/libykcs11.so*" for d in _LIB_DIRS])


def find_opensc_pkcs11() -> Path | None:
    """OpenSC's PKCS#11 module, or None."""
    return _first([f"{d}{sub}/opensc-pkcs11.so" for d in _LIB_DIRS for sub in ("", "/pkcs11")])


def missing_parts() -> list[str]:
    """What this machine lacks to run a stack (empty when it can)."""
    missing = [
        name
        for name, found in (
            ("pcscd", find_pcscd()),
            ("unshare", shutil.which("unshare")),
            ("setpriv", shutil.which("setpriv")),
            ("vsmartcard-vpcd (libifdvpcd.so)", find_vpcd_driver()),
        )
        if not found
    ]
    return missing


@dataclass(frozen=True)
class PivStack:
    """A running pcscd with the emulated card in its reader."""

    card: PivCardProcess
    reader_name: str
    socket_path: Path
    ykcs11: Path | None
    opensc: Path | None


def _wait(
    predicate: Callable[[], bool],
    what: str,
    proc: subprocess.Popen[bytes],
    card: PivCardProcess,
    timeout: float,
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise RuntimeError(f"pcscd exited ({proc.returncode}) before {what}")
        if card.started and not card.is_alive():
            raise RuntimeError(f"the card process died before {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


@contextmanager
def piv_stack(
    directory: Path,
    card_state: Path,
    *,
    touch_timeout: float = 15.0,
    apdu_log: bool = False,
    timeout: float = 15.0,
) -> Iterator[PivStack]:
    """Start pcscd and put the card kept in ``card_state`` in its reader; stop both on exit.

    ``directory`` holds ``conf/reader.conf``, ``run/`` (the socket) and ``pcscd.log`` (with every
    APDU when ``apdu_log``). Sets ``PCSCLITE_CSOCK_NAME`` for this process while running.
    """
    missing = missing_parts()
    pcscd, driver = find_pcscd(), find_vpcd_driver()
    if missing or pcscd is None or driver is None:
        raise RuntimeError(f"missing: {', '.join(missing)}")
    conf, run = directory / "conf", directory / "run"
    for d in (conf, run):
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
    socket_path = run / "pcscd" / "pcscd.comm"
    card = PivCardProcess(card_state, free_port_pair(), touch_timeout=touch_timeout)
    (conf / "reader.conf").write_text(
        f'FRIENDLYNAME "{READER_PREFIX}"\nDEVICENAME /dev/null:{card.port}\nLIBPATH {driver}\n'
    )
    log = (directory / "pcscd.log").open("wb")
    proc = _start_pcscd(pcscd, conf, run, log, apdu_log=apdu_log)
    previous = os.environ.get("PCSCLITE_CSOCK_NAME")
    os.environ["PCSCLITE_CSOCK_NAME"] = str(socket_path)
    try:
        _wait(socket_path.exists, "the pcscd socket", proc, card, timeout)
        card.start()
        _wait(card.powered.is_set, "the card to be powered", proc, card, timeout)
        yield PivStack(
            card,
            f"{READER_PREFIX} 00 00",
            socket_path,
            find_ykcs11(),
            find_opensc_pkcs11(),
        )
    finally:
        if previous is None:
            os.environ.pop("PCSCLITE_CSOCK_NAME", None)
        else:
            os.environ["PCSCLITE_CSOCK_NAME"] = previous
        _terminate(proc)
        log.close()
        card.stop()


def _start_pcscd(
    pcscd: Path, conf: Path, run: Path, log: IO[bytes], *, apdu_log: bool
) -> subprocess.Popen[bytes]:
    """pcscd in its own mount namespace, with ``run`` bound over /run, logging to ``log``."""
    # pdeathsig: pcscd goes when this process does, even if it is killed outright.
    unshare = ["setpriv", "--pdeathsig", "TERM", "unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        unshare[5:5] = ["--user", "--map-root-user"]
    flags = "-f -a -d" if apdu_log else "-f -i"
    script = f'mount --bind "$1" /run && exec "$3" {flags} -c "$2"'
    return subprocess.Popen(
        [*unshare, "sh", "-c", script, "sh", str(run), str(conf), str(pcscd)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 5 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
