"""`vaultd export` and `vaultd exec --env/--json/--ini` against a real daemon.

Each format is read back by its real consumer: bash `source` (env), `json` (json), the AWS CLI
reading the exported file as its shared credentials file (ini); FakeSts records the key id the
CLI signed with.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import Installation, approve_pending

from .conftest import ACCESS_KEY_ID, SECRET

MakeVault = Callable[..., Installation]


def export(inst: Installation, *args: str) -> subprocess.CompletedProcess[bytes]:
    """`vaultd ARGS` with no controlling terminal (approved with `vaultd approve` if needed)."""
    return subprocess.run(
        [sys.executable, "-m", "vaultd", *args],
        env=inst.env,
        capture_output=True,
        timeout=60,
        check=False,
        start_new_session=True,
    )


def approved_export(inst: Installation, *args: str) -> subprocess.CompletedProcess[bytes]:
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(export, inst, *args)
        approve_pending(inst, "123456", profile="dev")
        return future.result()


def test_every_format_is_read_back_by_its_own_parser(
    make_vault: MakeVault, fake_sts: FakeSts, tmp_path: Path
) -> None:
    inst = make_vault()
    first = approved_export(inst, "export", "--format", "json", "dev")
    assert first.returncode == 0, first.stderr
    creds = json.loads(first.stdout)
    assert creds["Version"] == 1 and creds["AccessKeyId"] != ACCESS_KEY_ID
    assert SECRET.encode() not in first.stdout

    env_file = tmp_path / "session.env"
    done = export(inst, "export", "dev", "--region", "eu-west-2")  # the cached session
    assert done.returncode == 0, done.stderr
    env_file.write_bytes(done.stdout)
    sourced = subprocess.run(
        [
            "bash",
            "-c",
            'source "$1" && printf "%s\\n" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" '
            '"$AWS_SESSION_TOKEN" "$AWS_CREDENTIAL_EXPIRATION" "$AWS_REGION" "$AWS_DEFAULT_REGION"',
            "bash",
            str(env_file),
        ],
        capture_output=True,
        check=True,
    )
    assert sourced.stdout.decode().splitlines() == [
        creds["AccessKeyId"],
        creds["SecretAccessKey"],
        creds["SessionToken"],
        creds["Expiration"],
        "eu-west-2",
        "eu-west-2",
    ]

    ini = export(inst, "exec", "--ini", "dev")  # the alias
    assert ini.returncode == 0, ini.stderr
    credentials_file = tmp_path / "exported-credentials"
    credentials_file.write_bytes(ini.stdout)
    env = {**inst.env, "AWS_SHARED_CREDENTIALS_FILE": str(credentials_file)}
    env["AWS_CONFIG_FILE"] = str(tmp_path / "no-config")
    aws = [sys.executable, "-m", "awscli", "sts", "get-caller-identity", "--profile", "dev"]
    called = subprocess.run(
        [*aws, "--region", "us-east-1"], env=env, capture_output=True, timeout=60, check=False
    )
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout)["UserId"] == creds["AccessKeyId"]

    assert export(inst, "exec", "--json", "dev").stdout == first.stdout
    assert fake_sts.calls("GetSessionToken") == 1


def test_a_root_key_profile_is_refused_and_nothing_is_printed(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    inst = make_vault(
        profiles={
            "rootp": {"credentials": "root", "mfa_serial": "arn:aws:iam::123456789012:mfa/root"}
        },
        start=False,
    )
    inst.add_key_pair("root", "AKIAROOTCANARY000001", "RootCanarySecret" + "0" * 24, root=True)
    inst.start_daemon()
    for args in (("export", "rootp"), ("exec", "--env", "rootp")):
        done = export(inst, *args)
        assert done.returncode != 0 and done.stdout == b""
        lines = done.stderr.decode().splitlines()
        assert len(lines) == 1 and lines[0].startswith("vaultd: BREAK_GLASS_ONLY: "), lines
    assert fake_sts.calls() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("export", 'dev","action":"x'),
            'vaultd: BAD_REQUEST: \'dev","action":"x\' is not a profile name: 1 to 64 of '
            "A-Z a-z 0-9 . _ -",
        ),
        (
            ("export", "--region", "mars\n", "dev"),
            "vaultd: BAD_REQUEST: --region 'mars\\n' is not an AWS region name such as eu-west-1",
        ),
        (
            ("exec", "--env", "dev", "--", "true"),
            "vaultd: BAD_REQUEST: --env prints the session and runs nothing: drop the command",
        ),
        (
            ("exec", "--json", "--server", "dev"),
            "vaultd: BAD_REQUEST: --json prints the session: it does not go with --server",
        ),
        (
            ("export", "nope"),
            "vaultd: UNKNOWN_PROFILE: no profile 'nope' in the vaultd config: add [profiles.nope]",
        ),
    ],
)
def test_bad_input_is_one_line_and_nothing_is_released(
    make_vault: MakeVault, fake_sts: FakeSts, args: tuple[str, ...], message: str
) -> None:
    inst = make_vault()
    done = export(inst, *args)
    assert done.returncode != 0 and done.stdout == b""
    assert done.stderr.decode().splitlines() == [message]
    assert inst.vaultd("approvals", "--json").stdout.strip() == b"[]"
    assert fake_sts.calls() == 0


def test_an_unknown_format_is_refused_by_the_parser(make_vault: MakeVault) -> None:
    inst = make_vault(start=False)
    done = export(inst, "export", "--format", "yaml", "dev")
    assert done.returncode == 2 and done.stdout == b""
    assert b"invalid choice: 'yaml'" in done.stderr
