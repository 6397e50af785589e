"""`unlock`'s optional ``final_try_answer`` and the challenge of ``HSM_PIN_FINAL_TRY``
(docs/threat-model.md T9): no request field says "confirmed"."""

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


def test_final_try_answer_is_optional_text() -> None:
    assert decode_request(_unlock()) == UnlockRequest(pin="1234")
    request = decode_request(_unlock(final_try_answer="amber otter zebra"))
    assert isinstance(request, UnlockRequest)
    assert request.final_try_answer == "amber otter zebra"
    assert encode_request("unlock", pin="1234", final_try_answer="a b c").endswith(
        b'"final_try_answer":"a b c"}'
    )


@pytest.mark.parametrize("value", [True, 1, None, ["amber"], "", "x" * 65])
def test_final_try_answer_must_be_short_text(value: object) -> None:
    with pytest.raises(BadRequest, match="'final_try_answer'"):
        decode_request(_unlock(final_try_answer=value))


@pytest.mark.parametrize("field", ["confirm_final_try", "confirm", "final_try"])
def test_a_confirmation_flag_is_refused(field: str) -> None:
    """The old flag is gone: a script setting it gets BAD_REQUEST, never a login."""
    with pytest.raises(BadRequest, match=f"'{field}' is not allowed"):
        decode_request(_unlock(**{field: True}))


def test_final_try_error_round_trips_with_its_challenge() -> None:
    error = HsmPinFinalTry("the token is at its final PIN try", challenge="amber otter zebra")
    with pytest.raises(HsmPinFinalTry) as raised:
        decode_reply(error_reply(error))
    assert raised.value.code == "HSM_PIN_FINAL_TRY"
    assert raised.value.message == error.message
    assert raised.value.challenge == "amber otter zebra"
