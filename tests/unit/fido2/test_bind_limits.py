"""Bad inputs to hmac-secret binding end in a one-line vaultd error, never a ValueError.

``bind_plaintext`` takes the authenticators' outputs as a callable, so plain dicts stand in for
the touches here; the touch path itself is tested against the software authenticator in
``tests/integration/fido2/test_bind.py``.
"""

from __future__ import annotations

import pytest

from vaultd.errors import ApprovalUnavailable, ConfigError
from vaultd.fido2.gate import bind_plaintext


def test_more_authenticators_than_a_record_holds_is_a_config_error() -> None:
    outputs = {bytes([i + 1]) * 16: bytes(32) for i in range(17)}
    with pytest.raises(ConfigError, match="at most 16 authenticators, not 17") as err:
        bind_plaintext(b"secret", lambda salt: outputs)
    assert "\n" not in str(err.value)
    assert "vaultd fido2 remove" in str(err.value)


def test_no_authenticator_answering_binds_nothing() -> None:
    with pytest.raises(ApprovalUnavailable):
        bind_plaintext(b"secret", lambda salt: {})
