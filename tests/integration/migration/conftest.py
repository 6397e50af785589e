"""A real daemon over SoftHSM2 with no vaultd profiles yet, and aws-vault style AWS files."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from vaultd.testing.harness import Installation, create_installation
from vaultd.testing.moto_server import MotoServer
from vaultd.testing.softhsm import find_softhsm_module

KEY_ID = "AKIAMIGRATE000000001"
SECRET = "MigrateSecretKey000000000000000000000001"
SERIAL = "arn:aws:iam::123456789012:mfa/jon"

AWS_CONFIG = f"""# written by hand, years ago
[default]
region = eu-west-1

[profile jon]
region = eu-west-1
mfa_serial = {SERIAL}

[profile admin]
source_profile = jon
role_arn = arn:aws:iam::123456789012:role/Admin
mfa_serial = {SERIAL}

[profile long]
source_profile = jon
role_arn = arn:aws:iam::123456789012:role/Long
mfa_serial = {SERIAL}
duration_seconds = 7200

[profile partner]
# the partner's account
source_profile = jon
role_arn = arn:aws:iam::123456789012:role/Partner
external_id = partner-2024
output = json
"""

AWS_CREDENTIALS = f"""[jon]
aws_access_key_id = {KEY_ID}
aws_secret_access_key = {SECRET}

[other]
# kept: no MFA serial anywhere
aws_access_key_id = AKIAOTHER00000000001
aws_secret_access_key = OtherSecretKey00000000000000000000000001
"""


@pytest.fixture(scope="session")
def moto_session() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture
def vault(tmp_path: Path, moto_session: MotoServer) -> Iterator[Installation]:
    """An initialised installation (no profiles, daemon not started), AWS files in ~/.aws
    (use :func:`home_env`: ``inst.env`` points the AWS variables at other files)."""
    if find_softhsm_module() is None or shutil.which("softhsm2-util") is None:
        pytest.skip("SoftHSM2 is not installed (apt-get install softhsm2)")
    moto_session.reset()
    inst = create_installation(tmp_path / "vault", sts_url=moto_session.url)
    inst.config["profiles"] = {}
    inst.write_config()
    aws = tmp_path / "vault" / "home" / ".aws"
    aws.mkdir(mode=0o700)
    (aws / "config").write_text(AWS_CONFIG)
    (aws / "credentials").write_text(AWS_CREDENTIALS)
    (aws / "credentials").chmod(0o600)
    yield inst
    inst.stop_daemon()


def home_env(inst: Installation, **extra: str) -> dict[str, str]:
    """``inst.env`` with the AWS files at their defaults, ``~/.aws/config`` and ``credentials``."""
    env = {
        k: v
        for k, v in inst.env.items()
        if k not in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")
    }
    return {**env, **extra}
