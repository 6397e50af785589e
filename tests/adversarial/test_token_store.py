"""Token loss, hangs and PIN lockout on a running daemon (docs/threat-model.md T9, T21; F26, F27).

The daemon runs in this process (``Daemon.run`` in the test's event loop, real socket, real
SoftHSM2 token made and filled through the real CLI) with ``pkcs11.lib`` replaced by
:class:`~vaultd.testing.faulty_pkcs11.FaultyPkcs11`.  That wrapper is a fake only for what no
real peer can do: SoftHSM2 cannot be unplugged, hung or PIN-locked, so those faults are
scripted at the session boundary; every other token call reaches SoftHSM2.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import pytest
from pkcs11 import exceptions as pkerr

from vaultd import cli
from vaultd.core.final_try import TTL as FINAL_TRY_TTL
from vaultd.core.final_try import FinalTryGate
from vaultd.daemon import Daemon
from vaultd.errors import (
    AuditError,
    BadRequest,
    HsmPinFinalTry,
    HsmPinIncorrect,
    HsmPinLocked,
    Sealed,
    VaultError,
)
from vaultd.ipc.client import AsyncDaemonClient
from vaultd.ipc.protocol import Event
from vaultd.keys.pkcs11 import TokenKey
from vaultd.settings import load_settings
from vaultd.testing.clock import FakeClock
from vaultd.testing.faulty_pkcs11 import FaultyPkcs11, PinStep
from vaultd.testing.harness import MFA_SERIAL, Installation
from vaultd.testing.softhsm import reinitialize

from .conftest import MakeVault, record_output

pytestmark = pytest.mark.hsm

PROFILES: dict[str, dict[str, object]] = {
    "dev": {"credentials": "dev", "mfa_serial": MFA_SERIAL},
    "ops": {"credentials": "dev", "mfa_serial": "arn:aws:iam::123456789012:mfa/ops"},
}


@dataclass
class Running:
    """An in-process daemon, its faulty token layer and its installation."""

    daemon: Daemon
    faulty: FaultyPkcs11
    inst: Installation
    client: AsyncDaemonClient

    async def credentials(self, profile: str, code: str | None = None) -> dict[str, object]:
        """A ``credentials`` request; with ``code``, its approval is answered with it."""

        answers: list[asyncio.Future[dict[str, object]]] = []

        def approve(event: Event) -> None:
            if code is not None and event.name == "approval_pending":
                request = self.client.request("approve", id=event.fields["id"], code=code)
                answers.append(asyncio.ensure_future(request))

        reply = await self.client.request("credentials", profile=profile, on_event=approve)
        for answer in answers:
            await answer
        record_output(json.dumps(reply).encode())
        return reply


@pytest.fixture
def environment(
    make_vault: MakeVault, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Installation]]:
    """Point this process at a fresh installation (env, SoftHSM2 conf), as `vaultd` would be."""
    made: list[Installation] = []

    def make(**kwargs: object) -> Installation:
        inst = make_vault(profiles=PROFILES, start=False, **kwargs)
        env = inst.env
        for key in list(os.environ):
            if key not in env:
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        reinitialize(inst.token.module_path)
        made.append(inst)
        return inst

    yield make
    for inst in made:
        reinitialize(inst.token.module_path)


@pytest.fixture
async def running(environment: Callable[..., Installation]) -> AsyncIterator[Running]:
    """A daemon serving in this event loop through a :class:`FaultyPkcs11`."""
    async with Serving(environment()) as run:
        yield run


class Serving:
    """`async with Serving(inst)`: run the daemon of ``inst`` in this loop, faulty token layer."""

    def __init__(self, inst: Installation, faulty: FaultyPkcs11 | None = None) -> None:
        self.inst = inst
        self.faulty = faulty or FaultyPkcs11(inst.token.module_path)

    async def __aenter__(self) -> Running:
        self._patch = self.faulty.installed()
        self._patch.__enter__()
        daemon = Daemon(load_settings())
        self._task = asyncio.create_task(daemon.run())
        client = AsyncDaemonClient(self.inst.socket, timeout=30)
        for _ in range(300):
            if self._task.done():
                self._task.result()
            if self.inst.socket.exists():
                break
            await asyncio.sleep(0.02)
        self.run = Running(daemon, self.faulty, self.inst, client)
        return self.run

    async def __aexit__(self, *exc: object) -> None:
        self.run.daemon._stop.set()
        try:
            await asyncio.wait_for(self._task, 30)
        finally:
            self._patch.__exit__(None, None, None)


DEVICE_ERRORS = [
    pkerr.DeviceRemoved,
    pkerr.TokenNotPresent,
    pkerr.SessionHandleInvalid,
    pkerr.DeviceError,
]


@pytest.mark.parametrize("error", DEVICE_ERRORS, ids=lambda e: e.__name__)
async def test_token_lost_mid_decrypt_seals_and_wipes_the_cache(
    running: Running, error: type[pkerr.PKCS11Error]
) -> None:
    """Row 26 / T21 / G19: the failing request and every later one get SEALED; cache empty."""
    served = await running.credentials("dev", code="123456")
    assert "output" in served
    running.faulty.fail("decrypt", error)
    with pytest.raises(Sealed):
        await running.credentials("ops")  # needs the key pair: decrypt fails mid-request
    assert running.faulty.calls["decrypt"] >= 1
    with pytest.raises(Sealed):
        await running.credentials("dev")  # was cached: still refused
    status = await running.client.request("status")
    assert status["sealed"] is True
    assert all(p["expires_at"] is None for p in status["profiles"])  # type: ignore[attr-defined]
    assert list(running.daemon.service.cache.entries()) == []
    # Unsealing needs the human: the PIN, through `unlock`.
    pin = (running.inst.root / "pin").read_text()
    await running.client.request("unlock", pin=pin)
    assert "output" in await running.credentials("ops", code="234567")


async def test_token_lost_while_serving_from_cache_seals(running: Running) -> None:
    """T21: the token goes away between two cache hits: SEALED next, cache wiped."""
    await running.credentials("dev", code="123456")
    running.faulty.fail("sign", pkerr.DeviceRemoved)
    with pytest.raises(VaultError) as first:
        await running.credentials("dev")
    assert first.value.code in ("SEALED", "AUDIT_UNAVAILABLE")  # nothing released either way
    with pytest.raises(VaultError) as second:
        await running.credentials("dev")
    assert second.value.code == "SEALED"
    assert list(running.daemon.service.cache.entries()) == []


async def test_token_loss_is_in_the_daemon_log(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    await running.credentials("dev", code="123456")
    running.faulty.fail("decrypt", pkerr.DeviceRemoved)
    with caplog.at_level(logging.INFO, logger="vaultd.daemon"), pytest.raises(Sealed):
        await running.credentials("ops")
    lost = [r for r in caplog.records if r.getMessage().startswith("token lost (")]
    assert [r.levelno for r in lost] == [logging.WARNING]
    assert "vaultd unlock" in lost[0].getMessage()


async def test_fail_closed_while_serving_from_cache_without_the_token(running: Running) -> None:
    """T14/T21 today: with the token gone, cache hits are refused (audit cannot be MACed)."""
    await running.credentials("dev", code="123456")
    running.faulty.fail("sign", pkerr.DeviceRemoved)
    for _ in range(2):
        with pytest.raises((Sealed, AuditError)):
            await running.credentials("dev")


async def test_token_call_hanging_past_the_deadline_seals(
    environment: Callable[..., Installation],
) -> None:
    """Row 26: a call hanging past the timeout seals like a removed token."""
    inst = environment(extra={"ipc": {"request_timeout": 3.0}, "pkcs11": {"call_timeout": 1.0}})
    release = threading.Event()
    try:
        async with Serving(inst) as run:
            run.faulty.hang("decrypt", release)
            with pytest.raises(VaultError) as info:
                await run.credentials("ops")
            release.set()
            assert info.value.code == "SEALED"
    finally:
        release.set()


PROGRESSION = [PinStep.INCORRECT, PinStep.COUNT_LOW, PinStep.FINAL_TRY, PinStep.LOCKED]


async def test_pin_progression_over_the_socket(
    environment: Callable[..., Installation], caplog: pytest.LogCaptureFixture
) -> None:
    """Row 27 / T9 / G18: one C_Login per entry; flags reach the client; LOCKED stays sealed.

    SoftHSM2 never locks a PIN (docs/threat-model.md component facts), so FaultyPkcs11 scripts the
    token's counter.
    """
    inst = environment()
    inst.config["pkcs11"]["pin_source"] = "prompt"
    inst.write_config()
    faulty = FaultyPkcs11(inst.token.module_path, pin_script=PROGRESSION)
    async with Serving(inst, faulty) as run:
        assert (await run.client.request("status"))["sealed"] is True
        seen: list[tuple[str, bool, bool]] = []
        for attempt in range(1, 4):
            with pytest.raises(HsmPinIncorrect) as info:
                await run.client.request("unlock", pin=f"wrong-{attempt}")
            seen.append((info.value.code, info.value.count_low, info.value.final_try))
            assert faulty.logins == attempt  # exactly one C_Login per entry, no retry
        assert seen == [
            ("HSM_PIN_INCORRECT", False, False),
            ("HSM_PIN_INCORRECT", True, False),
            ("HSM_PIN_INCORRECT", False, True),
        ]
        # FINAL_TRY: refused before C_Login until the person types the challenge; then one login.
        with pytest.raises(HsmPinFinalTry) as final:
            await run.client.request("unlock", pin="wrong-4")
        assert faulty.logins == 3 and final.value.challenge
        with pytest.raises(HsmPinLocked) as locked:
            await run.client.request(
                "unlock", pin="wrong-4", final_try_answer=final.value.challenge
            )
        assert faulty.logins == 4
        assert "SO PIN" in str(locked.value)  # recovery text
        # Locked: even the right PIN is refused without touching the token again.
        with pytest.raises(HsmPinLocked):
            await run.client.request("unlock", pin=inst.token.user_pin)
        assert faulty.logins == 4
        assert (await run.client.request("status"))["sealed"] is True
        with pytest.raises(Sealed):
            await run.credentials("dev")
    assert inst.token.user_pin not in caplog.text and "wrong-" not in caplog.text


def test_pin_progression_in_the_adapter(environment: Callable[..., Installation]) -> None:
    """Row 27 at the adapter: flags read before and after each login, never a second login."""
    inst = environment()
    faulty = FaultyPkcs11(inst.token.module_path, pin_script=PROGRESSION)
    results: list[tuple[str, int]] = []
    with faulty.installed():
        for confirm in (False, False, False, False, True, True):
            try:
                TokenKey.open(
                    inst.token.module_path,
                    "vaultd",
                    "vaultd-kek",
                    "000000",
                    confirm_final_try=confirm,
                ).close()
            except VaultError as exc:
                results.append((exc.code, faulty.logins))
    assert results == [
        ("HSM_PIN_INCORRECT", 1),
        ("HSM_PIN_INCORRECT", 2),
        ("HSM_PIN_INCORRECT", 3),
        ("HSM_PIN_FINAL_TRY", 3),  # unconfirmed: no C_Login
        ("HSM_PIN_LOCKED", 4),  # confirmed: exactly one
        ("HSM_PIN_LOCKED", 4),  # locked: refused before C_Login
    ]


# --- docs/threat-model.md T9: the final PIN try is spent only after a typed confirmation
# ----------------


def test_final_try_in_the_adapter_needs_confirmation(
    environment: Callable[..., Installation],
) -> None:
    """T9: at FINAL_TRY, no C_Login without confirmation; with it exactly one (then reset).

    FaultyPkcs11 starts the token at FINAL_TRY: SoftHSM2 never gets there (docs/threat-model.md
    component facts).
    """
    inst = environment()
    faulty = FaultyPkcs11(inst.token.module_path, pin_state=PinStep.FINAL_TRY)
    pin = inst.token.user_pin
    with faulty.installed():
        with pytest.raises(HsmPinFinalTry) as refused:
            TokenKey.open(inst.token.module_path, "vaultd", "vaultd-kek", pin)
        assert faulty.logins == 0
        assert refused.value.code == "HSM_PIN_FINAL_TRY" and pin not in str(refused.value)
        assert "final try" in str(refused.value)
        vault = TokenKey.open(
            inst.token.module_path, "vaultd", "vaultd-kek", pin, confirm_final_try=True
        )
        assert faulty.logins == 1 and not vault.sealed
        vault.close()
        # The good PIN reset the counter: no confirmation is needed any more.
        TokenKey.open(inst.token.module_path, "vaultd", "vaultd-kek", pin).close()
        assert faulty.logins == 2


async def test_daemon_with_a_pin_file_starts_sealed_at_final_try(
    environment: Callable[..., Installation], caplog: pytest.LogCaptureFixture
) -> None:
    """T9 / row 27: a PIN file never spends the final try; unlock over the socket must confirm."""
    inst = environment()
    assert str(inst.config["pkcs11"]["pin_source"]).startswith("file:")
    faulty = FaultyPkcs11(inst.token.module_path, pin_state=PinStep.FINAL_TRY)
    pin = inst.token.user_pin
    async with Serving(inst, faulty) as run:
        assert (await run.client.request("status"))["sealed"] is True
        assert faulty.logins == 0
        assert "final PIN try" in caplog.text and "vaultd unlock" in caplog.text
        with pytest.raises(HsmPinFinalTry) as final:
            await run.client.request("unlock", pin=pin)
        assert faulty.logins == 0
        assert (await run.client.request("status"))["sealed"] is True
        await run.client.request("unlock", pin=pin, final_try_answer=final.value.challenge)
        assert faulty.logins == 1
        assert (await run.client.request("status"))["sealed"] is False
    assert pin not in caplog.text


@pytest.mark.parametrize("step", [PinStep.INCORRECT, PinStep.LOCKED])
async def test_daemon_with_a_refused_pin_file_starts_sealed_after_one_login(
    environment: Callable[..., Installation], caplog: pytest.LogCaptureFixture, step: PinStep
) -> None:
    """T9: a refused or locked PIN at start seals instead of exiting, so a service manager's
    restart loop cannot spend one PIN try per start; the daemon itself never retries."""
    inst = environment()
    faulty = FaultyPkcs11(inst.token.module_path, pin_script=[step])
    async with Serving(inst, faulty) as run:
        assert (await run.client.request("status"))["sealed"] is True
        assert faulty.logins == 1
        assert "started sealed" in caplog.text
        if step is PinStep.LOCKED:  # the recovery text, and no login until the SO resets it
            assert "reset it with the SO PIN" in caplog.text
            with pytest.raises(HsmPinLocked):
                await run.client.request("unlock", pin=inst.token.user_pin)
            assert faulty.logins == 1
        else:
            await run.client.request("unlock", pin=inst.token.user_pin)  # the person's retry
            assert faulty.logins == 2
            assert (await run.client.request("status"))["sealed"] is False
    assert inst.token.user_pin not in caplog.text


async def _cli_unlock(
    environment: Callable[..., Installation],
    stdin: object,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[int, FaultyPkcs11, bool]:
    """Run `vaultd unlock` (in a thread) against a daemon at FINAL_TRY whose challenge is always
    ``otter otter otter``; status, fake, sealed."""
    inst = environment()
    faulty = FaultyPkcs11(inst.token.module_path, pin_state=PinStep.FINAL_TRY)
    monkeypatch.setattr("sys.stdin", stdin)
    async with Serving(inst, faulty) as run:
        run.daemon.final_try = FinalTryGate(run.daemon.parts.clock, pick=lambda words: "otter")
        status = await asyncio.to_thread(cli.main, ["unlock"])
        sealed = (await run.client.request("status"))["sealed"]
    assert isinstance(sealed, bool)
    return status, faulty, sealed


async def test_cli_unlock_refuses_the_final_try_without_a_terminal(
    environment: Callable[..., Installation],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """T9: a script cannot spend the final try, even by piping the right words."""
    piped = io.StringIO("otter otter otter\n")
    status, faulty, sealed = await _cli_unlock(environment, piped, monkeypatch)
    err = capsys.readouterr().err
    assert status != 0 and sealed and faulty.logins == 0
    assert "HSM_PIN_FINAL_TRY" in err and "not a terminal" in err


@pytest.mark.parametrize(
    ("typed", "unsealed"),
    [("otter otter otter", True), ("final try", False), ("yes", False), ("", False)],
)
async def test_cli_unlock_asks_for_the_typed_challenge_on_a_terminal(
    environment: Callable[..., Installation],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    typed: str,
    unsealed: bool,
) -> None:
    """T9: on a real pty, only the challenge's words send the PIN again, in exactly one C_Login."""
    master, slave = os.openpty()
    with os.fdopen(slave, "r") as tty:
        os.write(master, f"{typed}\n".encode())
        try:
            status, faulty, sealed = await _cli_unlock(environment, tty, monkeypatch)
        finally:
            os.close(master)
    captured = capsys.readouterr()
    assert "FINAL PIN try" in captured.err and "otter otter otter" in captured.err
    assert (status == 0, sealed, faulty.logins) == (unsealed, not unsealed, int(unsealed))
    assert ("unsealed" in captured.out) is unsealed


# --- T9 attacks: a script that has the PIN but not the person ------------------------------


async def test_a_confirmation_flag_cannot_spend_the_final_try(
    environment: Callable[..., Installation],
) -> None:
    """T9 attack: the old ``confirm_final_try`` flag, a guessed or replayed answer, an answer
    with no challenge and an expired one are all refused with no C_Login."""
    inst = environment()
    faulty = FaultyPkcs11(inst.token.module_path, pin_state=PinStep.FINAL_TRY)
    pin = inst.token.user_pin
    async with Serving(inst, faulty) as run:
        clock = FakeClock()
        run.daemon.final_try = FinalTryGate(clock)
        with pytest.raises(BadRequest, match="'confirm_final_try' is not allowed"):
            await run.client.request("unlock", pin=pin, confirm_final_try=True)
        with pytest.raises(HsmPinFinalTry):  # an answer before any challenge
            await run.client.request("unlock", pin=pin, final_try_answer="final try")
        with pytest.raises(HsmPinFinalTry) as first:
            await run.client.request("unlock", pin=pin)
        with pytest.raises(HsmPinFinalTry) as guessed:  # a wrong guess ends the challenge...
            await run.client.request("unlock", pin=pin, final_try_answer="amber amber amber")
        assert "do not match" in guessed.value.message
        with pytest.raises(HsmPinFinalTry):  # ...so its words are useless afterwards
            await run.client.request("unlock", pin=pin, final_try_answer=first.value.challenge)
        with pytest.raises(HsmPinFinalTry) as late:
            await run.client.request("unlock", pin=pin)
        clock.advance(FINAL_TRY_TTL + 1)
        with pytest.raises(HsmPinFinalTry):
            await run.client.request("unlock", pin=pin, final_try_answer=late.value.challenge)
        assert faulty.logins == 0
        assert (await run.client.request("status"))["sealed"] is True
        with pytest.raises(HsmPinFinalTry) as fresh:
            await run.client.request("unlock", pin=pin)
        await run.client.request("unlock", pin=pin, final_try_answer=fresh.value.challenge)
        assert faulty.logins == 1
        assert (await run.client.request("status"))["sealed"] is False


# --- a token removed and put back: `vaultd unlock` finds it again (issue 13) ---------------


async def test_unlock_reopens_a_token_that_came_back(running: Running) -> None:
    """The token leaves (its SoftHSM2 directory moves away; the module re-reads its slots, as a
    real module does on unplug), the daemon seals; it comes back, but the module's slot list
    still lacks it until re-initialised: `unlock` must do that itself, with no restart."""
    inst = running.inst
    await running.credentials("dev", code="123456")
    (token_dir,) = (inst.token.conf_path.parent / "tokens").iterdir()
    away = inst.token.conf_path.parent / "token-away"
    token_dir.rename(away)
    reinitialize(inst.token.module_path)  # the module notices: the token is gone
    with pytest.raises((Sealed, AuditError)):
        await running.credentials("dev")
    assert (await running.client.request("status"))["sealed"] is True
    away.rename(token_dir)  # back in the reader; the module has not looked again
    await running.client.request("unlock", pin=inst.token.user_pin)
    assert (await running.client.request("status"))["sealed"] is False
    assert "output" in await running.credentials("ops", code="234567")
