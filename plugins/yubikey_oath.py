"""Code source: the AWS MFA TokenCode from a YubiKey's OATH applet (entry point ``yubikey-oath``).

The TOTP secret never leaves the YubiKey: vaultd sends the time step and gets the code back,
through yubikey-manager's ``yubikit.oath.OathSession`` over a PC/SC smart-card connection. It
needs the optional extra ``vaultd[yubikey]`` and a running pcscd; without them the plugin
reports itself unavailable.

The credential of an MFA device is the one whose id (``issuer:name``) or name equals the
serial, unless ``names`` maps the serial to another id. A credential added with ``--touch``
makes the key blink: ``on_touch`` is told "touch your YubiKey" just before the code is asked
for, and an unanswered touch raises ``ApprovalTimeout``. AWS virtual MFA is TOTP with SHA-1,
6 digits and 30 s steps; HOTP credentials and other periods or lengths are refused.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from vaultd.plugin.api import (
    CODE_RE,
    PLUGIN_API_VERSION,
    ApprovalTimeout,
    ConfigError,
    MfaError,
    PluginError,
)

if TYPE_CHECKING:
    from yubikit.core.smartcard import SmartCardConnection
    from yubikit.oath import Code, Credential, OathSession

log = logging.getLogger(__name__)

Opener = Callable[[], "SmartCardConnection"]
"""Opens a smart-card connection to one YubiKey."""
Devices = Callable[[], Sequence[Opener]]
"""Lists the attached YubiKeys, one opener each."""

TOUCH_PROMPT = "touch your YubiKey: it is blinking to release an AWS MFA code"
PERIOD = 30
_SW_TOUCH_TIMEOUT = 0x6982  # SECURITY_CONDITION_NOT_SATISFIED: nobody touched in time


def pcsc_devices() -> list[Opener]:
    """The YubiKeys pcscd sees (raises when yubikey-manager or pcscd is missing)."""
    # Lazy: yubikey-manager is an optional dependency; the plugin loads without it.
    from ykman import pcsc
    from yubikit.core.smartcard import SmartCardConnection

    found = cast(Callable[[], list[Any]], pcsc.list_devices)()
    return [functools.partial(dev.open_connection, SmartCardConnection) for dev in found]


def _log_touch(message: str) -> None:
    log.warning("%s", message)


class YubiKeyOath:
    """TOTP codes computed by the YubiKey OATH applet (a ``CodeSource`` plugin)."""

    PLUGIN_API_VERSION = PLUGIN_API_VERSION

    def __init__(
        self,
        devices: Devices = pcsc_devices,
        *,
        names: Mapping[str, str] | None = None,
        on_touch: Callable[[str], None] = _log_touch,
    ) -> None:
        self._devices = devices
        self._names = dict(names or {})
        self._on_touch = on_touch

    def configured(
        self, *, names: Mapping[str, str], on_touch: Callable[[str], None]
    ) -> YubiKeyOath:
        """A copy with the serial-to-credential map and the touch prompt set (by the daemon)."""
        return YubiKeyOath(self._devices, names=names, on_touch=on_touch)

    def is_available(self) -> bool:
        """Whether YubiKeys can be listed (yubikey-manager installed, pcscd running).

        A key may be plugged in later: with none attached, codes fail with ``PluginError``.
        """
        try:
            self._devices()
        except Exception as exc:  # missing extra, no pcscd, reader errors: all mean "not here"
            log.info("no YubiKey reachable: %s: %s", type(exc).__name__, exc)
            return False
        return True

    def credential_id(self, serial: str) -> str:
        """The OATH credential id used for ``serial``."""
        return self._names.get(serial, serial)

    def has_seed(self, serial: str) -> bool:
        """Whether an attached YubiKey holds a credential for ``serial`` (the port's name).

        ``False`` only when the keys answer without one; an unusable credential
        (``ConfigError``) or no reachable key (``PluginError``) still raises, saying why.
        """
        try:
            with self._credential(serial, int(time.time())):
                return True
        except MfaError:
            return False

    def code_at(self, serial: str, timestamp: int) -> str:
        """The code of the 30 s step holding ``timestamp`` (Unix seconds).

        Raises ``MfaError`` when no attached key has the credential, ``ConfigError`` for a
        credential AWS cannot use, ``ApprovalTimeout`` for an unanswered touch and
        ``PluginError`` when no YubiKey can be reached or its applet fails.
        """
        # Lazy: yubikey-manager is an optional dependency; the plugin loads without it.
        from yubikit.core.smartcard import ApduError

        with self._credential(serial, timestamp) as (session, cred, code):
            if code is None:  # a touch credential: calculate_all leaves its code out
                self._on_touch(TOUCH_PROMPT)
                try:
                    code = session.calculate_code(cred, timestamp)
                except ApduError as exc:
                    if exc.sw != _SW_TOUCH_TIMEOUT:
                        raise
                    raise ApprovalTimeout(
                        f"the YubiKey was not touched in time for {cred.name!r}; ask again "
                        "and touch the key while it blinks"
                    ) from None
            if not CODE_RE.match(code.value):
                raise ConfigError(
                    f"the YubiKey credential {cred.name!r} gives {len(code.value)}-digit "
                    "codes; AWS needs 6 digits: add it again with --digits 6"
                )
            return code.value

    @contextmanager
    def _credential(
        self, serial: str, timestamp: int
    ) -> Iterator[tuple[OathSession, Credential, Code | None]]:
        """The first attached key's session and credential for ``serial``, while it is open."""
        # Lazy: yubikey-manager is an optional dependency; the plugin loads without it.
        from yubikit.core import CommandError
        from yubikit.oath import OATH_TYPE, OathSession

        wanted = self.credential_id(serial)
        openers = self._list()
        for opener in openers:
            try:
                connection = opener()
            except Exception as exc:  # the reader or pcscd failed: try the next key
                log.warning("cannot open a YubiKey: %s: %s", type(exc).__name__, exc)
                continue
            with connection:
                try:
                    session = OathSession(connection)
                    if session.locked:
                        raise PluginError(
                            "the YubiKey's OATH applet is protected by a password, which "
                            "vaultd cannot enter: remove it with `ykman oath access change "
                            "--clear`"
                        )
                    for cred, code in session.calculate_all(timestamp).items():
                        if wanted not in (cred.id.decode("utf-8", "replace"), cred.name):
                            continue
                        if cred.oath_type != OATH_TYPE.TOTP or cred.period != PERIOD:
                            raise ConfigError(
                                f"the YubiKey credential {wanted!r} is not a 30 s TOTP "
                                "credential; AWS virtual MFA needs one: add it again as TOTP"
                            )
                        yield session, cred, code
                        return
                except CommandError as exc:
                    raise PluginError(
                        f"the YubiKey's OATH applet failed ({type(exc).__name__}: {exc}); "
                        "re-insert the key and try again"
                    ) from None
        if not openers:
            raise PluginError(
                "no YubiKey is attached (or pcscd is not running): insert the key holding "
                f"the MFA credential for {serial}"
            )
        raise MfaError(
            f"no attached YubiKey holds an OATH credential {wanted!r} for MFA device {serial}: "
            "add it with `ykman oath accounts add`, or map the serial in "
            "plugins.yubikey_oath_names"
        )

    def _list(self) -> Sequence[Opener]:
        try:
            return self._devices()
        except Exception as exc:  # missing extra or pcscd: the same fix for the user
            raise PluginError(
                f"cannot list YubiKeys ({type(exc).__name__}: {exc}); install vaultd[yubikey] "
                "and start pcscd"
            ) from None
