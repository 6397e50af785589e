"""open_devices: the device specs accepted in settings."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fido2.hid import CtapHidDevice

from vaultd.errors import ConfigError
from vaultd.fido2.devices import open_devices
from vaultd.testing.soft_ctap2 import SoftCtap2Device


def test_soft_device_opens_loudly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="vaultd.fido2.devices"):
        devices = open_devices([f"soft:{tmp_path / 'a.json'}", f"soft:{tmp_path / 'b.json'}"])
    assert [type(d) for d in devices] == [SoftCtap2Device, SoftCtap2Device]
    assert (tmp_path / "a.json").exists() and (tmp_path / "b.json").exists()
    assert "SOFTWARE test authenticator" in caplog.text


def test_hid_lists_present_keys_possibly_none() -> None:
    devices = open_devices(["hid"])
    assert all(isinstance(d, CtapHidDevice) for d in devices)


@pytest.mark.parametrize("spec", ["usb", "soft:", "", "HID"])
def test_unknown_spec_is_config_error(spec: str) -> None:
    with pytest.raises(ConfigError, match="use 'hid' or 'soft:PATH'"):
        open_devices([spec])
