"""Boto3StsClient against moto: what is sent (moto's recorder), since moto checks no MFA."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyotp
import pytest

from vaultd.aws.sts import Boto3StsClient
from vaultd.core.model import LongTermCredentials
from vaultd.testing.moto_server import MotoProcess, MotoServer, moto_process

pytestmark = pytest.mark.sts


def enrol(moto: MotoServer | MotoProcess) -> tuple[LongTermCredentials, str, str]:
    """A user with a key and an enabled virtual MFA device: (keys, serial, current code)."""
    akid, secret = moto.create_user_with_key("alice")
    serial, seed = moto.create_virtual_mfa("alice")
    return LongTermCredentials(akid, secret), serial, pyotp.TOTP(seed).now()


def test_get_session_token_sends_the_mfa_context(moto: MotoServer) -> None:
    stored, serial, code = enrol(moto)
    moto.start_recording()
    creds = Boto3StsClient(endpoint_url=moto.url).get_session_token(
        stored, duration_seconds=3600, serial_number=serial, token_code=code, region=None
    )
    assert creds.access_key_id == "AKIAIOSFODNN7EXAMPLE"  # moto's fixed example credentials
    assert creds.seconds_left(datetime.now(UTC)) > 3000
    [sent] = moto.recorded_requests()
    assert sent["params"]["Action"] == "GetSessionToken"
    assert sent["params"]["SerialNumber"] == serial
    assert sent["params"]["TokenCode"] == code
    assert sent["params"]["DurationSeconds"] == "3600"
    assert f"Credential={stored.access_key_id}/" in sent["headers"]["Authorization"]


def test_assume_role_chained_from_the_mfa_session(moto: MotoServer) -> None:
    stored, serial, code = enrol(moto)
    role_arn = moto.create_role("admin")
    sts = Boto3StsClient(endpoint_url=moto.url)
    session = sts.get_session_token(
        stored, duration_seconds=3600, serial_number=serial, token_code=code, region=None
    )
    moto.start_recording()
    role = sts.assume_role(
        session,
        role_arn=role_arn,
        role_session_name="vaultd-alice",
        duration_seconds=1800,
        external_id="ext-42",
        serial_number=None,
        token_code=None,
        region=None,
    )
    left = role.seconds_left(datetime.now(UTC))
    assert 1800 - 120 < left <= 1800
    assert role.access_key_id.startswith("ASIA")
    [sent] = moto.recorded_requests()
    assert sent["params"] == {
        "Action": "AssumeRole",
        "Version": "2011-06-15",
        "RoleArn": role_arn,
        "RoleSessionName": "vaultd-alice",
        "DurationSeconds": "1800",
        "ExternalId": "ext-42",
    }
    assert sent["headers"]["X-Amz-Security-Token"] == session.session_token
    assert f"Credential={session.access_key_id}/" in sent["headers"]["Authorization"]


def test_assume_role_directly_with_long_term_keys_and_mfa(moto: MotoServer) -> None:
    stored, serial, code = enrol(moto)
    role_arn = moto.create_role("admin")
    moto.start_recording()
    role = Boto3StsClient(endpoint_url=moto.url).assume_role(
        stored,
        role_arn=role_arn,
        role_session_name="vaultd-alice",
        duration_seconds=7200,
        external_id=None,
        serial_number=serial,
        token_code=code,
        region="eu-west-1",
    )
    assert role.seconds_left(datetime.now(UTC)) > 3600
    [sent] = moto.recorded_requests()
    assert sent["params"]["SerialNumber"] == serial
    assert sent["params"]["TokenCode"] == code
    assert sent["params"]["DurationSeconds"] == "7200"
    assert "ExternalId" not in sent["params"]
    assert "X-Amz-Security-Token" not in sent["headers"]
    assert f"Credential={stored.access_key_id}/" in sent["headers"]["Authorization"]
    assert "/eu-west-1/sts/" in sent["headers"]["Authorization"]


def test_endpoint_from_environment_and_no_ambient_identity(
    moto: MotoServer, aws_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored, serial, code = enrol(moto)
    (aws_env / "credentials").write_text(
        "[default]\naws_access_key_id = AKIAFROMFILE00000000\naws_secret_access_key = f\n"
    )
    (aws_env / "config").write_text("[default]\nregion = ap-south-1\n")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto.url)
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENT00000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "environment-secret")
    moto.start_recording()
    Boto3StsClient().get_session_token(
        stored, duration_seconds=900, serial_number=serial, token_code=code, region=None
    )
    [sent] = moto.recorded_requests()
    assert f"Credential={stored.access_key_id}/" in sent["headers"]["Authorization"]
    assert "/us-east-1/sts/" in sent["headers"]["Authorization"]


def test_moto_process_serves_sts() -> None:
    with moto_process() as server:
        stored, serial, code = enrol(server)
        server.start_recording()
        creds = Boto3StsClient(endpoint_url=server.url).get_session_token(
            stored, duration_seconds=900, serial_number=serial, token_code=code, region=None
        )
        assert creds.session_token
        [sent] = server.recorded_requests()
        assert (sent["params"]["SerialNumber"], sent["params"]["TokenCode"]) == (serial, code)
    assert server.process.returncode is not None
