"""The README's AWS config snippet as written, against a real daemon and the real AWS CLI.

``credential_process = vaultd credential-process NAME`` (the console script on PATH, no
``--socket``), with the daemon's socket moved by ``socket`` in the vaultd config file and
nothing in the environment naming it: the client finds the socket the way the daemon does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import MFA_SERIAL, ROLE_ARN, Installation, approve_pending

MakeVault = Callable[..., Installation]


def test_the_readme_snippet_finds_the_socket_set_in_the_config(
    make_vault: MakeVault, fake_sts: FakeSts, tmp_path: Path
) -> None:
    inst = make_vault()
    assert inst.socket.parent != Path(inst.env.get("XDG_RUNTIME_DIR", "/run/user")) / "vaultd"
    env = {k: v for k, v in inst.env.items() if k != "VAULTD_SOCKET"}
    env["XDG_RUNTIME_DIR"] = str(tmp_path / "no-daemon-here")
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    Path(env["AWS_CONFIG_FILE"]).write_text(
        "[profile dev]\ncredential_process = vaultd credential-process dev\nregion = us-east-1\n"
    )
    aws = [str(Path(sys.executable).with_name("aws")), "sts", "get-caller-identity"]
    proc = subprocess.Popen(
        [*aws, "--profile", "dev"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # no terminal: answered with `vaultd approve`
    )
    approve_pending(inst, "424242", profile="dev")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out)["Account"] == "123456789012"
    assert fake_sts.calls("GetSessionToken") == 1


def _readme_snippet() -> str:
    """The ``ini`` block under the README's "The AWS config snippet" heading."""
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    section = readme.split("### The AWS config snippet", 1)[1]
    return section.split("```ini\n", 1)[1].split("```", 1)[0]


def test_the_readme_snippet_as_written_works_with_no_region_in_the_environment(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    inst = make_vault(
        profiles={
            "work": {"credentials": "dev", "mfa_serial": MFA_SERIAL},
            "work-admin": {"source_profile": "work", "role_arn": ROLE_ARN},
        }
    )
    env = {k: v for k, v in inst.env.items() if k not in ("AWS_REGION", "AWS_DEFAULT_REGION")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    Path(env["AWS_CONFIG_FILE"]).write_text(_readme_snippet())
    aws = [str(Path(sys.executable).with_name("aws")), "sts", "get-caller-identity"]
    for profile in ("work", "work-admin"):
        proc = subprocess.Popen(
            [*aws, "--profile", profile],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # no terminal: answered with `vaultd approve`
        )
        if profile == "work":
            approve_pending(inst, "424242", profile="work")
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert json.loads(out)["Account"] == "123456789012"
