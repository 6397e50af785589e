"""The emulated PIV card and its vpcd client, run in a child process.

Why a process and not a thread: python-pkcs11 holds the GIL through ``C_Finalize`` and
``C_Initialize`` (``lib.reinitialize()``). ykcs11's ``C_Finalize`` disconnects with a card reset,
and pcscd then asks vpcd for the ATR; a card thread in the same process cannot answer without the
GIL, so the test process deadlocks. In its own process the card always answers.

The parent steers the child through shared values: whether a touch comes and after how long,
a card pulled at a given command, and counters of touches, APDUs and logouts. The card's state
is read back from its JSON file (written atomically). The child is spawned, not forked (the
parent may hold PKCS#11 modules and threads), so a script that starts one needs the usual
``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.sharedctypes
import time
from multiprocessing.synchronize import Event
from pathlib import Path

from vaultd.testing.piv_card import PivCard, PivState, touch_never
from vaultd.testing.vpcd import VpcdCardClient

_ctx = multiprocessing.get_context("spawn")
_PULLED = b"\x6f\x00"
"""The status word every command gets once the card is pulled: no precise diagnosis."""


def _run(
    state_path: Path,
    port: int,
    touch_timeout: float,
    touch_comes: multiprocessing.sharedctypes.Synchronized[int],
    touch_delay: multiprocessing.sharedctypes.Synchronized[float],
    touches: multiprocessing.sharedctypes.Synchronized[int],
    apdus: multiprocessing.sharedctypes.Synchronized[int],
    logouts: multiprocessing.sharedctypes.Synchronized[int],
    fault: multiprocessing.sharedctypes.SynchronizedArray[int],
    powered: Event,
    stop: Event,
) -> None:
    def touch(timeout: float) -> bool:
        if not touch_comes.value or touch_delay.value > timeout:
            return touch_never(timeout)
        time.sleep(touch_delay.value)
        with touches.get_lock():
            touches.value += 1
        return True

    card = PivCard(state_path, touch=touch, touch_timeout=touch_timeout)

    def transmit(apdu: bytes) -> bytes:
        with apdus.get_lock():
            apdus.value += 1
        with fault.get_lock():  # [INS to fail at, how many to let through first, failing]
            if len(apdu) > 1 and apdu[1] == fault[0] and not fault[2]:
                fault[1] -= 1
                fault[2] = int(fault[1] < 0)
            if fault[2]:
                return _PULLED
        try:
            return card.transmit(apdu)
        finally:
            logouts.value = card.logouts

    client = VpcdCardClient(transmit, card.power_cycle, port)
    client.start()
    parent = multiprocessing.parent_process()
    while not stop.wait(0.02):
        if parent is None or not parent.is_alive():  # killed outright: do not outlive it
            break
        if client.powered.is_set():
            powered.set()
        else:
            powered.clear()
    client.stop()


class PivCardProcess:
    """Runs ``PivCard(state_path)`` in a child process, connected to vpcd on ``port``."""

    def __init__(self, state_path: Path, port: int, *, touch_timeout: float = 15.0) -> None:
        """Set up (the card state file is created by the child if absent); :meth:`start` runs."""
        self.state_path = state_path
        self.port = port
        self._touch_comes = _ctx.Value("b", 1)
        self._touch_delay = _ctx.Value("d", 0.0)
        self._touches = _ctx.Value("i", 0)
        self._apdus = _ctx.Value("i", 0)
        self._logouts = _ctx.Value("i", 0)
        self._fault = _ctx.Array("i", [-1, 0, 0])
        self.powered = _ctx.Event()
        """Set while vpcd has the card powered up (pcscd then lists it as present)."""
        self._stop = _ctx.Event()
        self._proc = _ctx.Process(
            target=_run,
            args=(
                state_path,
                port,
                touch_timeout,
                self._touch_comes,
                self._touch_delay,
                self._touches,
                self._apdus,
                self._logouts,
                self._fault,
                self.powered,
                self._stop,
            ),
            name="piv-card",
            daemon=True,
        )

    @property
    def touch_comes(self) -> bool:
        """Whether the user touches the key when asked (else the touch times out)."""
        return bool(self._touch_comes.value)

    @touch_comes.setter
    def touch_comes(self, value: bool) -> None:
        self._touch_comes.value = int(value)

    @property
    def touch_delay(self) -> float:
        """Seconds the user takes to touch the key once it asks (past the timeout: never)."""
        return float(self._touch_delay.value)

    @touch_delay.setter
    def touch_delay(self, value: float) -> None:
        self._touch_delay.value = value

    @property
    def touches(self) -> int:
        """Touches given so far."""
        return int(self._touches.value)

    @property
    def apdus(self) -> int:
        """Command APDUs the card has answered so far."""
        return int(self._apdus.value)

    @property
    def logouts(self) -> int:
        """Times a SELECT dropped a verified PIN, as a YubiKey does (another program's SELECT
        logs every connection out)."""
        return int(self._logouts.value)

    def pull_at(self, ins: int, *, skip: int = 0) -> None:
        """Pull the card when a command with instruction byte ``ins`` arrives, after letting
        ``skip`` of them through: that command and every later one fail (6F00, not executed)
        until :meth:`reinsert`."""
        with self._fault.get_lock():
            self._fault[:] = [ins, skip, 0]

    def reinsert(self) -> None:
        """Undo :meth:`pull_at`: commands run again."""
        with self._fault.get_lock():
            self._fault[:] = [-1, 0, 0]

    @property
    def pulled(self) -> bool:
        """Whether a :meth:`pull_at` fault has struck."""
        return bool(self._fault[2])

    def state(self) -> PivState:
        """The card's state as last saved."""
        return PivState.load(self.state_path)

    @property
    def started(self) -> bool:
        """Whether :meth:`start` ran."""
        return self._proc.pid is not None

    def is_alive(self) -> bool:
        """Whether the child still runs."""
        return self._proc.is_alive()

    def start(self) -> None:
        """Start the child."""
        self._proc.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the child (the card leaves the reader)."""
        if not self.started:
            return
        self._stop.set()
        deadline = time.monotonic() + timeout
        self._proc.join(max(0.0, deadline - time.monotonic()))
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
