"""`vaultd export` rendering: each format read back by its real parser; odd values refused."""

from __future__ import annotations

import configparser
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from botocore.configloader import raw_config_parse

from vaultd.commands.export import FORMATS, render
from vaultd.core.model import SessionCredentials
from vaultd.errors import ProtocolError

EXPIRES = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
CREDS = SessionCredentials(
    "ASIAEXAMPLE000000001",
    "wJalr/XUtnFEMI+K7MDENG/bPxRfiCYEXAMPLEKEY",
    "IQoJb3JpZ2luX2VjE/+a=" * 40 + "==",
    EXPIRES,
)


def test_env_is_sourced_by_bash(tmp_path: Path) -> None:
    script = tmp_path / "env"
    script.write_text(render(CREDS, "env", "dev", "eu-west-1"))
    out = subprocess.run(
        ["bash", "-c", 'source "$1" && env', "bash", str(script)],
        capture_output=True,
        check=True,
        env={},
    ).stdout.decode()
    got = dict(line.split("=", 1) for line in out.splitlines() if line.startswith("AWS_"))
    assert got == {
        "AWS_ACCESS_KEY_ID": CREDS.access_key_id,
        "AWS_SECRET_ACCESS_KEY": CREDS.secret_access_key,
        "AWS_SESSION_TOKEN": CREDS.session_token,
        "AWS_CREDENTIAL_EXPIRATION": "2030-01-02T03:04:05Z",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }


def test_json_is_the_credential_process_document() -> None:
    assert json.loads(render(CREDS, "json", "dev", "eu-west-1")) == {
        "Version": 1,
        "AccessKeyId": CREDS.access_key_id,
        "SecretAccessKey": CREDS.secret_access_key,
        "SessionToken": CREDS.session_token,
        "Expiration": "2030-01-02T03:04:05Z",
    }


def test_ini_is_one_section_for_configparser_and_botocore(tmp_path: Path) -> None:
    text = render(CREDS, "ini", "dev.prod-1", "eu-west-1")
    parser = configparser.ConfigParser()  # with interpolation: a '%' would already fail here
    parser.read_string(text)
    expected = {
        "aws_access_key_id": CREDS.access_key_id,
        "aws_secret_access_key": CREDS.secret_access_key,
        "aws_session_token": CREDS.session_token,
        "region": "eu-west-1",
    }
    assert parser.sections() == ["dev.prod-1"] and dict(parser["dev.prod-1"]) == expected
    path = tmp_path / "credentials"
    path.write_text(text)
    assert raw_config_parse(str(path)) == {"dev.prod-1": expected}


def test_ini_without_a_region_has_no_region_key() -> None:
    parser = configparser.ConfigParser()
    parser.read_string(render(CREDS, "ini", "dev", None))
    assert "region" not in parser["dev"]


HOSTILE = [
    "tok\n[evil]\naws_access_key_id = AKIAEVIL",
    "tok'; touch /tmp/pwned; '",
    "$(touch /tmp/pwned)",
    "tok\rx",
    " tok",
    "tok%(x)s",
    "tok;comment",
    "tok\x00",
    "",
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("field", ["access_key_id", "secret_access_key", "session_token"])
def test_a_value_sts_never_sends_is_refused_in_every_format(
    fmt: str, value: str, field: str
) -> None:
    values = {
        "access_key_id": CREDS.access_key_id,
        "secret_access_key": CREDS.secret_access_key,
        "session_token": CREDS.session_token,
        field: value,
    }
    hostile = SessionCredentials(expiration=EXPIRES, **values)
    with pytest.raises(ProtocolError, match="holds characters STS never sends") as caught:
        render(hostile, fmt, "dev", None)
    assert value not in str(caught.value) or not value
