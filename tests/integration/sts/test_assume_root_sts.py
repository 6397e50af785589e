"""Boto3StsClient.assume_root against FakeSts, and FakeSts's own AssumeRoot validation.

moto does not implement AssumeRoot, so FakeSts stands in for it and applies the rules AWS
documents (Regional endpoint only, a root-task policy, 0-900 s, not root, an MFA session).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from urllib.parse import urlencode

import pytest

from vaultd.aws.sts import Boto3StsClient
from vaultd.core.model import LongTermCredentials, SessionCredentials
from vaultd.errors import ConfigError, StsAccessDenied, StsDuration, StsError
from vaultd.testing.fake_sts import FakeSts

pytestmark = pytest.mark.sts

SERIAL = "arn:aws:iam::123456789012:mfa/org-admin"
ADMIN = LongTermCredentials("AKIAORGADMIN00000001", "OrgAdminSecret00000000000000000000000001")
ROOT = LongTermCredentials("AKIAROOTKEY000000001", "RootSecret0000000000000000000000000001", True)
MEMBER = "111122223333"
AUDIT = "arn:aws:iam::aws:policy/root-task/IAMAuditRootUserCredentials"


def mfa_session(sts: Boto3StsClient, keys: LongTermCredentials = ADMIN) -> SessionCredentials:
    return sts.get_session_token(
        keys, duration_seconds=900, serial_number=SERIAL, token_code="123456", region="eu-west-1"
    )


def assume(sts: Boto3StsClient, creds: SessionCredentials, **kw: object) -> SessionCredentials:
    params: dict[str, object] = {
        "target_principal": MEMBER,
        "task_policy_arn": AUDIT,
        "duration_seconds": 900,
        "region": "eu-west-1",
    }
    params.update(kw)
    return sts.assume_root(creds, **params)  # type: ignore[arg-type]


def test_assume_root_with_an_mfa_session_on_the_regional_endpoint(fake_sts: FakeSts) -> None:
    sts = Boto3StsClient(endpoint_url=fake_sts.url)
    root = assume(sts, mfa_session(sts), duration_seconds=300)
    assert root.access_key_id.startswith("ASIA")
    sent = fake_sts.requests[-1]
    assert (sent.action, sent.endpoint, sent.region) == ("AssumeRoot", "regional", "eu-west-1")
    assert (sent.target_principal, sent.task_policy_arn) == (MEMBER, AUDIT)
    assert sent.duration_seconds == 300 and sent.session_token_sent
    assert fake_sts.calls("AssumeRoot") == 1


def test_a_session_made_without_mfa_is_refused(fake_sts: FakeSts) -> None:
    sts = Boto3StsClient(endpoint_url=fake_sts.url)
    plain = sts.get_session_token(
        ADMIN, duration_seconds=900, serial_number=None, token_code=None, region="eu-west-1"
    )
    with pytest.raises(StsAccessDenied, match="sts:AssumeRoot"):
        assume(sts, plain)
    assert fake_sts.calls("AssumeRoot") == 1  # sent once, never retried


def test_root_credentials_are_refused(fake_sts: FakeSts) -> None:
    fake_sts.add_root_key(ROOT.access_key_id)
    sts = Boto3StsClient(endpoint_url=fake_sts.url)
    with pytest.raises(StsAccessDenied):
        assume(sts, mfa_session(sts, ROOT))


def test_the_global_endpoint_refuses(fake_sts: FakeSts) -> None:
    """The stand-in's global endpoint refuses, as AWS's sts.amazonaws.com does."""
    sts = Boto3StsClient(endpoint_url=fake_sts.global_url)
    with pytest.raises(StsError, match="Regional"):
        assume(sts, mfa_session(sts))


def test_the_adapter_refuses_a_global_endpoint_before_sending(fake_sts: FakeSts) -> None:
    with pytest.raises(ConfigError, match="Regional"):
        Boto3StsClient(endpoint_url="https://sts.amazonaws.com").assume_root_endpoint("us-east-1")


def test_without_an_override_the_endpoint_is_the_regions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_STS_REGIONAL_ENDPOINTS", "legacy")  # would pick the global one
    assert (
        Boto3StsClient().assume_root_endpoint("us-east-1") == "https://sts.us-east-1.amazonaws.com"
    )
    assert (
        Boto3StsClient().assume_root_endpoint("eu-west-1") == "https://sts.eu-west-1.amazonaws.com"
    )


def test_more_than_900_seconds_is_refused_locally(fake_sts: FakeSts) -> None:
    sts = Boto3StsClient(endpoint_url=fake_sts.url)
    creds = mfa_session(sts)
    with pytest.raises(StsDuration):
        assume(sts, creds, duration_seconds=901)
    assert fake_sts.calls("AssumeRoot") == 0


def _raw(fake: FakeSts, host: str, region: str, **form: str) -> tuple[int, str]:
    """POST an AssumeRoot form as a client that skips botocore's checks would."""
    sts = Boto3StsClient(endpoint_url=fake.url)
    creds = mfa_session(sts)
    body = urlencode(
        {
            "Action": "AssumeRoot",
            "Version": "2011-06-15",
            "TargetPrincipal": MEMBER,
            "TaskPolicyArn.arn": AUDIT,
            **form,
        }
    ).encode()
    request = urllib.request.Request(fake.url, data=body, method="POST")  # noqa: S310 - local
    request.add_header("Host", host)
    request.add_header("X-Amz-Security-Token", creds.session_token)
    request.add_header(
        "Authorization",
        f"AWS4-HMAC-SHA256 Credential={creds.access_key_id}/20250101/{region}/sts/aws4_request",
    )
    try:
        with urllib.request.urlopen(request) as reply:  # noqa: S310 - the local stand-in
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.parametrize(
    ("host", "region", "form", "needle"),
    [
        ("sts.amazonaws.com", "us-east-1", {}, "Regional"),
        ("sts.eu-west-1.amazonaws.com", "us-east-1", {}, "Regional"),
        ("sts.eu-west-1.amazonaws.com", "eu-west-1", {"DurationSeconds": "901"}, "900"),
        ("sts.eu-west-1.amazonaws.com", "eu-west-1", {"TaskPolicyArn.arn": "arn:x"}, "root-task"),
        ("sts.eu-west-1.amazonaws.com", "eu-west-1", {"TargetPrincipal": "123456789012"},
         "management"),
    ],
)  # fmt: skip
def test_the_stand_in_validates_as_aws_documents(
    fake_sts: FakeSts, host: str, region: str, form: dict[str, str], needle: str
) -> None:
    status, text = _raw(fake_sts, host, region, **form)
    assert status in (400, 403) and needle in text


def test_the_stand_in_accepts_a_regional_host_matching_the_scope(fake_sts: FakeSts) -> None:
    status, text = _raw(fake_sts, "sts.eu-west-1.amazonaws.com", "eu-west-1")
    assert status == 200 and "<AccessKeyId>ASIA" in text
    assert fake_sts.requests[-1].host == "sts.eu-west-1.amazonaws.com"
