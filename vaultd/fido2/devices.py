"""Opening the FIDO2 authenticators named in settings."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from fido2.ctap import CtapDevice
from fido2.hid import CtapHidDevice

from vaultd.errors import ConfigError

logger = logging.getLogger(__name__)

_SOFT_PREFIX = "soft:"


def open_devices(specs: Sequence[str]) -> list[CtapDevice]:
    """Open every device named by ``specs``: ``"hid"`` (all USB keys present, possibly none) or
    ``"soft:PATH"`` (the software test authenticator whose state file is PATH)."""
    devices: list[CtapDevice] = []
    for spec in specs:
        if spec == "hid":
            devices.extend(CtapHidDevice.list_devices())
        elif spec.startswith(_SOFT_PREFIX) and len(spec) > len(_SOFT_PREFIX):
            # Lazy: the software authenticator (a test double) loads only when configured.
            from vaultd.testing.soft_ctap2 import SoftCtap2Device

            logger.warning(
                "FIDO2 device %r is the SOFTWARE test authenticator: its keys sit in a plain "
                "file and any process can 'touch' it; use it for tests and the demo only",
                spec,
            )
            devices.append(SoftCtap2Device(spec[len(_SOFT_PREFIX) :]))
        else:
            raise ConfigError(
                f"unknown FIDO2 device {spec!r}: use 'hid' or 'soft:PATH' in fido2.devices"
            )
    return devices
