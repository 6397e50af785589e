"""Boto3StsClient against FakeSts: error mapping, attempt counts, local checks, bad responses.

FakeSts is a fake because no real peer can be told to throttle, time out or reject a code;
attempts are counted on its side.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest

from vaultd.aws.sts import Boto3StsClient
from vaultd.core.model import LongTermCredentials, SessionCredentials
from vaultd.errors import (
    CodeMalformed,
    ConfigError,
    MfaRejected,
    StsAccessDenied,
    StsClockSkew,
    StsDuration,
    StsError,
    StsExpiredToken,
    StsKeyInvalid,
    StsRegionDisabled,
    StsThrottled,
    StsUnavailable,
    VaultError,
)
from vaultd.testing.fake_sts import FakeSts, Fault

pytestmark = pytest.mark.sts

SERIAL = "arn:aws:iam::123456789012:mfa/alice"
CODE = "493817"
ROLE = "arn:aws:iam::123456789012:role/admin"
STORED = LongTermCredentials("AKIACANARY0000000001", "canary-secret-0123456789abcdefghijklmnop")


def client(url: str, *, read_timeout: float = 2) -> Boto3StsClient:
    return Boto3StsClient(endpoint_url=url, connect_timeout=2, read_timeout=read_timeout)


def mfa_call(sts: Boto3StsClient) -> SessionCredentials:
    return sts.get_session_token(
        STORED, duration_seconds=3600, serial_number=SERIAL, token_code=CODE, region=None
    )


def plain_call(sts: Boto3StsClient, session: SessionCredentials) -> SessionCredentials:
    return sts.assume_role(
        session,
        role_arn=ROLE,
        role_session_name="vaultd-test",
        duration_seconds=3600,
        external_id=None,
        serial_number=None,
        token_code=None,
        region=None,
    )


def assert_no_secret(error: VaultError, *secrets: str) -> None:
    for secret in (CODE, STORED.secret_access_key, *secrets):
        assert secret not in str(error)


MFA_ERRORS = [
    ("Throttling", StsThrottled),
    ("InternalFailure", StsUnavailable),
    ("ServiceUnavailable", StsUnavailable),
    ("AccessDenied", MfaRejected),
    ("ExpiredToken", StsExpiredToken),
    ("RegionDisabledException", StsRegionDisabled),
    ("InvalidClientTokenId", StsKeyInvalid),
    ("SignatureDoesNotMatch", StsKeyInvalid),
    ("RequestExpired", StsClockSkew),
]


@pytest.mark.parametrize(("aws_code", "expected"), MFA_ERRORS)
def test_mfa_call_errors_map_and_are_sent_once(
    fake_sts: FakeSts, aws_code: str, expected: type[VaultError]
) -> None:
    fake_sts.inject(Fault(error_code=aws_code, message=f"code {CODE} refused"), times=None)
    with pytest.raises(expected) as caught:
        mfa_call(client(fake_sts.url))
    assert type(caught.value) is expected
    assert fake_sts.calls("GetSessionToken") == 1
    assert_no_secret(caught.value)


PLAIN_ERRORS = [
    ("Throttling", StsThrottled, 3),
    ("InternalFailure", StsUnavailable, 3),
    ("ServiceUnavailable", StsUnavailable, 3),
    ("AccessDenied", StsAccessDenied, 1),
    ("ExpiredToken", StsExpiredToken, 1),
    ("RegionDisabledException", StsRegionDisabled, 1),
    ("InvalidClientTokenId", StsKeyInvalid, 1),
    ("RequestExpired", StsClockSkew, 1),
]


@pytest.mark.parametrize(("aws_code", "expected", "attempts"), PLAIN_ERRORS)
def test_plain_call_errors_map_with_standard_retries(
    fake_sts: FakeSts,
    session_credentials: SessionCredentials,
    aws_code: str,
    expected: type[VaultError],
    attempts: int,
) -> None:
    fake_sts.inject(Fault(error_code=aws_code), times=None)
    with pytest.raises(expected) as caught:
        plain_call(client(fake_sts.url), session_credentials)
    assert type(caught.value) is expected
    assert fake_sts.calls("AssumeRole") == attempts
    assert_no_secret(
        caught.value, session_credentials.secret_access_key, session_credentials.session_token
    )


def test_messages_say_what_to_do(
    fake_sts: FakeSts, session_credentials: SessionCredentials
) -> None:
    sts = client(fake_sts.url)
    expectations = [
        ("InvalidClientTokenId", "revoked or rotated"),
        ("RequestExpired", "system clock"),
        ("ServiceUnavailable", "fresh code"),
        ("AccessDenied", "next code"),
    ]
    for aws_code, phrase in expectations:
        fake_sts.inject(Fault(error_code=aws_code))
        with pytest.raises(VaultError, match=phrase):
            mfa_call(sts)


def test_transient_errors_then_success(
    fake_sts: FakeSts, session_credentials: SessionCredentials
) -> None:
    fake_sts.inject(Fault(error_code="ServiceUnavailable"), times=2)
    creds = plain_call(client(fake_sts.url), session_credentials)
    assert fake_sts.calls("AssumeRole") == 3
    assert creds.access_key_id.startswith("ASIAFAKE")


def test_mfa_read_timeout_after_send_spends_the_code(fake_sts: FakeSts) -> None:
    fake_sts.inject(Fault(delay_seconds=5), times=None)
    with pytest.raises(StsUnavailable, match="fresh code") as caught:
        mfa_call(client(fake_sts.url, read_timeout=0.3))
    assert fake_sts.calls() == 1
    assert fake_sts.requests[0].token_code == CODE
    assert_no_secret(caught.value)


def test_plain_read_timeout_is_retried(
    fake_sts: FakeSts, session_credentials: SessionCredentials
) -> None:
    fake_sts.inject(Fault(delay_seconds=5), times=None)
    with pytest.raises(StsUnavailable):
        plain_call(client(fake_sts.url, read_timeout=0.3), session_credentials)
    assert fake_sts.calls() == 3


def test_connection_reset(fake_sts: FakeSts, session_credentials: SessionCredentials) -> None:
    fake_sts.inject(Fault(drop_connection=True), times=None)
    sts = client(fake_sts.url)
    with pytest.raises(StsUnavailable, match="fresh code"):
        mfa_call(sts)
    assert fake_sts.calls() == 1
    with pytest.raises(StsUnavailable):
        plain_call(sts, session_credentials)
    assert fake_sts.calls() == 1 + 3


def test_nothing_listening_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(StsUnavailable, match="fresh code"):
        mfa_call(client(f"http://127.0.0.1:{port}"))


@pytest.mark.parametrize("kind", ["past", "malformed"])
def test_bad_expiration_returns_nothing(
    fake_sts: FakeSts, kind: Literal["past", "malformed"]
) -> None:
    fake_sts.inject(Fault(expiration=kind))
    with pytest.raises(StsError) as caught:
        mfa_call(client(fake_sts.url))
    assert type(caught.value) is StsError
    assert "nothing was" in str(caught.value)
    assert fake_sts.calls() == 1


@pytest.mark.parametrize(
    ("aws_code", "message", "expected"),
    [
        ("ValidationError", "The requested DurationSeconds exceeds the 1 hour limit", StsDuration),
        ("ValidationError", "Value at 'roleArn' failed to satisfy constraint", ConfigError),
        ("MalformedPolicyDocument", "bad policy", ConfigError),
        ("PackedPolicyTooLarge", "too large", ConfigError),
        ("SomethingNew", "a new error", StsError),
    ],
)
def test_request_errors(
    fake_sts: FakeSts, aws_code: str, message: str, expected: type[VaultError]
) -> None:
    fake_sts.inject(Fault(error_code=aws_code, message=message))
    with pytest.raises(expected) as caught:
        mfa_call(client(fake_sts.url))
    assert type(caught.value) is expected
    assert aws_code in str(caught.value) or expected is StsDuration


@pytest.mark.parametrize(
    "code",
    [
        "12345a",
        "1234567",
        "12345",
        " 123456",
        "123456\n",
        "\u0661\u0662\u0663\u0664\u0665\u0666",  # Arabic-Indic digits
        "\uff11\uff12\uff13\uff14\uff15\uff16",  # full-width digits
        "",
    ],
)
def test_malformed_code_sends_nothing(
    fake_sts: FakeSts, session_credentials: SessionCredentials, code: str
) -> None:
    sts = client(fake_sts.url)
    with pytest.raises(CodeMalformed):
        sts.get_session_token(
            STORED, duration_seconds=3600, serial_number=SERIAL, token_code=code, region=None
        )
    with pytest.raises(CodeMalformed):
        sts.assume_role(
            STORED,
            role_arn=ROLE,
            role_session_name="vaultd-test",
            duration_seconds=3600,
            external_id=None,
            serial_number=SERIAL,
            token_code=code,
            region=None,
        )
    assert fake_sts.calls() == 0


@pytest.mark.parametrize(
    ("serial", "code"),
    [("GAHT1234", CODE), (SERIAL + " x", CODE), ("a" * 257, CODE), (SERIAL, None), (None, CODE)],
    ids=["too-short", "space", "too-long", "serial-without-code", "code-without-serial"],
)
def test_bad_mfa_serial_sends_nothing(
    fake_sts: FakeSts, serial: str | None, code: str | None
) -> None:
    with pytest.raises(ConfigError):
        client(fake_sts.url).get_session_token(
            STORED, duration_seconds=3600, serial_number=serial, token_code=code, region=None
        )
    assert fake_sts.calls() == 0


@pytest.mark.parametrize("seconds", [899, 129_601, 0, -1])
def test_session_duration_out_of_range_sends_nothing(fake_sts: FakeSts, seconds: int) -> None:
    with pytest.raises(StsDuration):
        client(fake_sts.url).get_session_token(
            STORED, duration_seconds=seconds, serial_number=SERIAL, token_code=CODE, region=None
        )
    assert fake_sts.calls() == 0


@pytest.mark.parametrize("seconds", [899, 43_201])
def test_role_duration_out_of_range_sends_nothing(
    fake_sts: FakeSts, session_credentials: SessionCredentials, seconds: int
) -> None:
    with pytest.raises(StsDuration):
        client(fake_sts.url).assume_role(
            session_credentials,
            role_arn=ROLE,
            role_session_name="vaultd-test",
            duration_seconds=seconds,
            external_id=None,
            serial_number=None,
            token_code=None,
            region=None,
        )
    assert fake_sts.calls() == 0


def test_success_uses_only_the_given_keys(
    fake_sts: FakeSts, monkeypatch: pytest.MonkeyPatch, session_credentials: SessionCredentials
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENT00000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "environment-secret")
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    sts = client(fake_sts.url)
    first, second = mfa_call(sts), mfa_call(sts)
    assert first.access_key_id != second.access_key_id
    assert first.session_token != second.session_token
    left = first.seconds_left(datetime.now(UTC))
    assert 3600 - 120 < left <= 3600
    sent = fake_sts.requests[0]
    assert (sent.action, sent.access_key_id, sent.region) == (
        "GetSessionToken",
        STORED.access_key_id,
        "us-east-1",
    )
    assert (sent.serial_number, sent.token_code, sent.duration_seconds) == (SERIAL, CODE, 3600)
    assert not sent.session_token_sent

    role = sts.assume_role(
        session_credentials,
        role_arn=ROLE,
        role_session_name="vaultd-test",
        duration_seconds=900,
        external_id="ext-42",
        serial_number=None,
        token_code=None,
        region="eu-west-1",
    )
    assert role.expiration - datetime.now(UTC) <= timedelta(seconds=900)
    sent = fake_sts.requests[-1]
    assert sent.access_key_id == session_credentials.access_key_id
    assert sent.session_token_sent and sent.region == "eu-west-1"
    assert (sent.role_arn, sent.role_session_name, sent.external_id) == (
        ROLE,
        "vaultd-test",
        "ext-42",
    )
    assert (sent.serial_number, sent.token_code, sent.duration_seconds) == (None, None, 900)


def test_import_is_cheap() -> None:
    probe = "import sys, vaultd.aws.sts; print(sorted(m for m in sys.modules if 'boto' in m))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("padding", [0, 1])
def test_credentials_beyond_what_a_reply_frame_holds_are_refused(
    fake_sts: FakeSts, padding: int
) -> None:
    """Issue 13 Low 12: the largest servable Credentials pass and fit one reply frame; one
    character more is refused here, before anything is cached or released."""
    from vaultd.aws.credential_process import render
    from vaultd.aws.sts import MAX_CREDENTIAL_CHARS
    from vaultd.ipc.protocol import MAX_FRAME, credentials_reply

    keys = len("ASIAFAKE000000000001") + len(f"fakesecret{1:030d}")
    fake_sts.inject(Fault(session_token_chars=MAX_CREDENTIAL_CHARS - keys + padding))
    if padding:
        with pytest.raises(StsError, match="SessionToken"):
            mfa_call(client(fake_sts.url))
        return
    session = mfa_call(client(fake_sts.url))
    assert len(credentials_reply(render(session))) <= MAX_FRAME
