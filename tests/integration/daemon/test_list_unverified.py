"""`vaultd list` says that what it shows is read without authenticating the records."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vaultd.commands.list import UNVERIFIED_NOTE
from vaultd.testing.harness import Installation

pytestmark = pytest.mark.hsm
MakeVault = Callable[..., Installation]


def test_list_marks_its_metadata_unverified(make_vault: MakeVault) -> None:
    inst = make_vault(start=False)
    lines = inst.vaultd("list").stdout.decode().splitlines()
    assert lines[0].split()[:2] == ["dev", "key_pair"]
    assert lines[-1] == UNVERIFIED_NOTE
    assert "unverified" in UNVERIFIED_NOTE
