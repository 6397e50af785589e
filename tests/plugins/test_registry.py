"""Entry-point discovery and the allowlist (docs/threat-model.md T26), against a real installed
distribution.

The third-party distribution ``acme-vaultd-plugins`` is built from source written here and
installed with ``pip install --target`` (offline: no build isolation, no dependencies); the
directory is put on ``sys.path`` in-process, or on ``PYTHONPATH`` for a ``vaultd`` subprocess.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from vaultd.errors import PluginError
from vaultd.plugin.api import Notifier, NotifyEvent, Severity
from vaultd.plugin.registry import Kind, State, doctor_lines, load_plugins, notify_all

ACME_MODULES = ("acme_always_gate", "acme_notify", "acme_broken", "acme_wrong")

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "acme-vaultd-plugins"
version = "1.0"

[project.entry-points."vaultd.mfa"]
acme-always = "acme_always_gate:AlwaysApprove"

[project.entry-points."vaultd.notify"]
acme-notify = "acme_notify:RecordingNotifier"
acme-broken = "acme_broken:Broken"
acme-old-api = "acme_notify:OldApiNotifier"
acme-wrong-kind = "acme_wrong:NotANotifier"
desktop = "acme_notify:RecordingNotifier"

[tool.setuptools]
py-modules = ["acme_always_gate", "acme_notify", "acme_broken", "acme_wrong"]
"""

SOURCES = {
    "acme_always_gate.py": '''
"""A code source that always gives one code: exactly what the allowlist must keep out."""


class AlwaysApprove:
    def is_available(self) -> bool:
        return True

    def configured(self, *, names, on_touch):
        return self

    def has_seed(self, serial: str) -> bool:
        return True

    def code_at(self, serial: str, timestamp: int) -> str:
        return "000000"
''',
    "acme_notify.py": """
from vaultd.plugin.api import NotifyEvent


class RecordingNotifier:
    def __init__(self) -> None:
        self.events: list[NotifyEvent] = []

    def is_available(self) -> bool:
        return True

    def notify(self, event: NotifyEvent) -> None:
        self.events.append(event)


class OldApiNotifier(RecordingNotifier):
    PLUGIN_API_VERSION = 0
""",
    "acme_broken.py": 'raise RuntimeError("acme_broken exploded at import")\n',
    "acme_wrong.py": "class NotANotifier:\n    def is_available(self) -> bool:\n"
    "        return True\n",
}


@pytest.fixture(scope="module")
def acme_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("acme-src")
    (src / "pyproject.toml").write_text(PYPROJECT)
    for name, text in SOURCES.items():
        (src / name).write_text(text)
    site = tmp_path_factory.mktemp("acme-site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return site


@pytest.fixture
def acme(acme_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in ACME_MODULES:
        assert name not in sys.modules
    monkeypatch.syspath_prepend(str(acme_site))
    yield acme_site
    for name in ACME_MODULES:
        sys.modules.pop(name, None)


def test_not_allowlisted_gate_is_listed_but_never_imported(acme: Path) -> None:
    loaded = load_plugins(())
    names = {(r.kind, r.name): r for r in loaded.reports}
    gate = names[(Kind.MFA, "acme-always")]
    assert gate.state is State.NOT_ALLOWLISTED
    assert gate.distribution == "acme-vaultd-plugins 1.0"
    assert not any(name in sys.modules for name in ACME_MODULES)
    with pytest.raises(PluginError) as err:
        loaded.require(Kind.MFA, "acme-always")
    assert err.value.code == "PLUGIN_UNAVAILABLE"


def test_allowlisted_gate_loads_and_only_it_is_imported(acme: Path) -> None:
    loaded = load_plugins(("mfa/acme-always",))
    gate = loaded.require(Kind.MFA, "acme-always")
    assert "acme_always_gate" in sys.modules
    assert "acme_notify" not in sys.modules
    assert getattr(gate, "code_at")("serial", 0) == "000000"  # noqa: B009


def test_plugin_raising_at_import_is_reported_and_others_still_load(
    acme: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loaded = load_plugins(("notify/acme-broken", "notify/acme-notify"))
    (failed,) = loaded.failed
    assert failed.name == "acme-broken"
    assert "RuntimeError: acme_broken exploded at import" in failed.reason
    assert "acme-broken" in caplog.text
    assert [r.name for r in loaded.loaded] == ["acme-notify"]
    assert len(loaded.notifiers()) == 1
    with pytest.raises(PluginError, match="exploded at import"):
        loaded.require(Kind.NOTIFY, "acme-broken")


def test_plugin_for_another_api_version_is_refused(acme: Path) -> None:
    loaded = load_plugins(("notify/acme-old-api",))
    (failed,) = loaded.failed
    assert "built for plugin API 0" in failed.reason


def test_object_not_implementing_its_groups_protocol_is_refused(acme: Path) -> None:
    (failed,) = load_plugins(("notify/acme-wrong-kind",)).failed
    assert "NotANotifier does not implement Notifier" in failed.reason


def test_name_shadowing_a_first_party_plugin_fails_closed(acme: Path) -> None:
    loaded = load_plugins(("notify/desktop",))
    sources = sorted(r.distribution.split()[0] for r in loaded.failed)
    assert sources == ["acme-vaultd-plugins", "vaultd"]
    for failed in loaded.failed:
        assert failed.reason.startswith("ambiguous: 2 entry points")
        assert "vaultd.plugins.notify_desktop" in failed.reason
    assert "acme_notify" not in sys.modules
    with pytest.raises(PluginError, match="ambiguous"):
        loaded.require(Kind.NOTIFY, "desktop")


def test_allowlisted_but_missing_name_is_reported(acme: Path) -> None:
    loaded = load_plugins(("mfa/no-such-plugin",))
    assert loaded.missing == ("mfa/no-such-plugin",)
    with pytest.raises(PluginError, match="not installed"):
        loaded.require(Kind.MFA, "no-such-plugin")
    lines = doctor_lines(("mfa/no-such-plugin", "notify/acme-broken"))
    assert "mfa/no-such-plugin: allowlisted but not installed" in lines
    assert any(
        line.startswith("notify/acme-broken (acme-vaultd-plugins 1.0): failed") for line in lines
    )


def run_cli(site: Path, tmp_path: Path, allow: str | None) -> tuple[dict[str, object], list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTD_")}
    env.update(PYTHONPATH=str(site), HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    if allow is not None:
        env["VAULTD_PLUGINS__ALLOW"] = allow
    script = (
        "import json, sys\n"
        "from vaultd import cli\n"
        "if 'plugins' not in cli.COMMAND_MODULES:\n"
        "    cli.COMMAND_MODULES += ('plugins',)\n"
        "rc = cli.main(['plugins', 'list', '--json'])\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('acme_'))), "
        "file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout), json.loads(done.stderr.strip().splitlines()[-1])


def states(doc: dict[str, object]) -> dict[str, str]:
    plugins = doc["plugins"]
    assert isinstance(plugins, list)
    return {
        f"{p['kind']}/{p['name']}": p["state"]
        for p in plugins
        if p["distribution"].startswith("acme")
    }


def test_cli_lists_without_importing_until_allowlisted_through_env(
    acme_site: Path, tmp_path: Path
) -> None:
    doc, modules = run_cli(acme_site, tmp_path, None)
    assert states(doc)["mfa/acme-always"] == "not-allowlisted"
    assert modules == []

    doc, modules = run_cli(acme_site, tmp_path, '["mfa/acme-always", "notify/acme-broken"]')
    assert doc["allow"] == ["mfa/acme-always", "notify/acme-broken"]
    found = states(doc)
    assert found["mfa/acme-always"] == "loaded"
    assert found["notify/acme-broken"] == "failed"
    assert found["notify/acme-notify"] == "not-allowlisted"
    assert modules == ["acme_always_gate"]


class Recorder:
    def __init__(self) -> None:
        self.events: list[NotifyEvent] = []

    def is_available(self) -> bool:
        return True

    def notify(self, event: NotifyEvent) -> None:
        self.events.append(event)


class Exploding(Recorder):
    def notify(self, event: NotifyEvent) -> None:
        raise OSError("boom")


class Hanging(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def notify(self, event: NotifyEvent) -> None:
        self.release.wait(30)


def test_notify_all_survives_raising_and_hanging_notifiers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """In-process notifiers written here; no plugin peer is involved."""
    caplog.set_level(logging.WARNING, logger="vaultd.plugin.registry")
    recorder, exploding, hanging = Recorder(), Exploding(), Hanging()
    notifiers: list[Notifier] = [exploding, hanging, recorder]
    event = NotifyEvent("approval.opened", "dev", Severity.INFO, "approve?")
    supervisor = notify_all(notifiers, event, timeout=0.05)
    supervisor.join(10)
    hanging.release.set()
    assert not supervisor.is_alive()
    assert recorder.events == [event]
    assert "notifier Exploding failed: OSError: boom" in caplog.text
    assert "notifier Hanging overran" in caplog.text


# --- allowlisted by group and name (docs/threat-model.md T26) ------------------------------

EVIL_MODULE = "evil_mfa_desktop"


@pytest.fixture
def evil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A distribution whose ``vaultd.mfa`` entry point borrows the name ``desktop``.

    Written as an installed distribution (``.dist-info`` with ``entry_points.txt``) straight
    into a directory put on ``sys.path``: importing its module records the import.
    """
    site = tmp_path / "evil-site"
    info = site / "evil_vaultd-6.6.6.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: evil-vaultd\nVersion: 6.6.6\n")
    (info / "entry_points.txt").write_text(f"[vaultd.mfa]\ndesktop = {EVIL_MODULE}:Evil\n")
    (site / f"{EVIL_MODULE}.py").write_text(
        "class Evil:\n    def is_available(self):\n        return True\n"
    )
    monkeypatch.syspath_prepend(str(site))
    assert EVIL_MODULE not in sys.modules
    yield site
    sys.modules.pop(EVIL_MODULE, None)


def test_notify_desktop_never_imports_an_mfa_plugin_called_desktop(evil: Path) -> None:
    loaded = load_plugins(("notify/desktop",))
    reports = {
        (r.kind, r.distribution.split()[0]): r for r in loaded.reports if r.name == "desktop"
    }
    assert reports[(Kind.MFA, "evil-vaultd")].state is State.NOT_ALLOWLISTED
    assert reports[(Kind.NOTIFY, "vaultd")].state in (State.LOADED, State.UNAVAILABLE)
    assert EVIL_MODULE not in sys.modules
    with pytest.raises(PluginError):
        loaded.require(Kind.MFA, "desktop")


def test_distribution_picks_one_of_two_plugins_sharing_a_name(acme: Path) -> None:
    loaded = load_plugins(("notify/desktop@vaultd",))
    by_dist = {r.distribution.split()[0]: r for r in loaded.reports if r.name == "desktop"}
    assert by_dist["acme-vaultd-plugins"].state is State.NOT_ALLOWLISTED
    assert by_dist["vaultd"].state in (State.LOADED, State.UNAVAILABLE)
    assert "acme_notify" not in sys.modules


def test_allowing_both_distributions_of_one_name_is_ambiguous_and_imports_neither(
    acme: Path,
) -> None:
    loaded = load_plugins(("notify/desktop@vaultd", "notify/desktop@acme_vaultd.plugins"))
    failed = {r.distribution.split()[0]: r.reason for r in loaded.failed}
    assert set(failed) == {"acme-vaultd-plugins", "vaultd"}
    assert all(reason.startswith("ambiguous") for reason in failed.values())
    assert "acme_notify" not in sys.modules
    assert loaded.missing == ()


@pytest.mark.parametrize(
    "allow", ['["desktop"]', '["gate/desktop"]', '["notify/"]', '["notify/desktop@"]']
)
def test_an_allow_entry_without_its_group_is_refused_at_config_load(
    tmp_path: Path, allow: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTD_")}
    env.update(
        HOME=str(tmp_path),
        XDG_CONFIG_HOME=str(tmp_path / "xdg"),
        VAULTD_PLUGINS__ALLOW=allow,
    )
    done = subprocess.run(
        [sys.executable, "-m", "vaultd", "plugins", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 78
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("vaultd: CONFIG_INVALID: invalid config")
    assert "is not GROUP/NAME" in line
    assert "notify/" in line
