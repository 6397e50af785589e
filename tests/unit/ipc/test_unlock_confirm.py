"""`unlock`'s optional ``confirm_final_try`` (docs/threat-model.md T9): strict bool, default
False."""

from __future__ import annotations

import json

import pytest

from vaultd.errors import BadRequest, HsmPinFinalTry
from vaultd.ipc.protocol import (
    UnlockRequest,
    decode_reply,
    decode_request,
    encode_request,
    error_reply,
)


def _unlock(**fields: object) -> bytes:
    return json.dumps({"v": 1, "op": "unlock", "pin": "1234", **fields}).encode()


def test_confirm_final_try_defaults_to_false_and_decodes_true() -> None:
    assert decode_request(_unlock()) == UnlockRequest(pin="1234")
    request = decode_request(_unlock(confirm_final_try=True))
    assert isinstance(request, UnlockRequest) and request.confirm_final_try is True
    assert encode_request("unlock", pin="1234", confirm_final_try=True).endswith(
        b'"confirm_final_try":true}'
    )


@pytest.mark.parametrize("value", [1, "true", "final try", None, [True]])
def test_confirm_final_try_must_be_a_boolean(value: object) -> None:
    with pytest.raises(BadRequest, match="'confirm_final_try' must be a boolean"):
        decode_request(_unlock(confirm_final_try=value))


def test_unknown_fields_are_still_refused() -> None:
    with pytest.raises(BadRequest, match="'confirm' is not allowed"):
        decode_request(_unlock(confirm=True))


def test_final_try_error_round_trips_to_its_class() -> None:
    error = HsmPinFinalTry("the token is at its final PIN try; no login was tried")
    with pytest.raises(HsmPinFinalTry) as raised:
        decode_reply(error_reply(error))
    assert raised.value.code == "HSM_PIN_FINAL_TRY"
    assert raised.value.message == error.message
