"""Plugin discovery through entry points, loading only allowlisted ones (docs/threat-model.md T26).

The allowlist names a plugin by group and name, ``notify/desktop``, and by distribution too,
``notify/desktop@vaultd``, where two distributions offer the same group and name: an entry
point that no entry selects is listed but never imported, and one that an entry selects along
with a twin (ambiguous) is refused before import. A selected one is imported, called with no
arguments to build the plugin, checked against its group's Protocol and asked
``is_available()``; any failure along the way is logged and reported, never raised.
:meth:`LoadedPlugins.require` then fails closed with ``PLUGIN_UNAVAILABLE`` for a profile that
needs a plugin that did not load.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from importlib.metadata import EntryPoint, entry_points

from vaultd.errors import PluginError
from vaultd.plugin.api import (
    PLUGIN_API_VERSION,
    CodeSource,
    KeyStore,
    Notifier,
    NotifyEvent,
    Plugin,
)

log = logging.getLogger(__name__)


class Kind(StrEnum):
    """A plugin kind; its value is the short name, :attr:`group` the entry-point group."""

    MFA = "mfa"
    NOTIFY = "notify"
    KEYSTORE = "keystore"

    @property
    def group(self) -> str:
        """The entry-point group, such as ``vaultd.notify``."""
        return f"vaultd.{self.value}"


_PROTOCOLS: dict[Kind, tuple[type, ...]] = {
    Kind.MFA: (CodeSource,),
    Kind.NOTIFY: (Notifier,),
    Kind.KEYSTORE: (KeyStore,),
}


ALLOW_ENTRY_RE = re.compile(
    r"^(?P<kind>mfa|notify|keystore)/(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,63})"
    r"(?:@(?P<dist>[A-Za-z0-9][A-Za-z0-9._-]{0,99}))?$"
)
"""One ``plugins.allow`` entry: ``GROUP/NAME`` or ``GROUP/NAME@DISTRIBUTION``."""


@dataclass(frozen=True, slots=True)
class AllowEntry:
    """One parsed ``plugins.allow`` entry; ``distribution`` is normalised, or ``None``."""

    kind: Kind
    name: str
    distribution: str | None = None

    @classmethod
    def parse(cls, text: str) -> AllowEntry:
        """Parse ``GROUP/NAME[@DISTRIBUTION]``; ``ValueError`` saying the form otherwise."""
        match = ALLOW_ENTRY_RE.match(text)
        if match is None:
            raise ValueError(
                f"{text!r} is not GROUP/NAME: write e.g. "
                f'"notify/{text}" or "mfa/{text}" (groups: mfa, notify, keystore; add '
                '"@DISTRIBUTION" where two distributions offer one name)'
            )
        dist = match["dist"]
        return cls(Kind(match["kind"]), match["name"], None if dist is None else _norm(dist))

    def selects(self, kind: Kind, ep: EntryPoint) -> bool:
        """Whether this entry names entry point ``ep`` of ``kind``."""
        if self.kind is not kind or self.name != ep.name:
            return False
        return self.distribution is None or self.distribution == _dist_name(ep)

    def __str__(self) -> str:
        tail = "" if self.distribution is None else f"@{self.distribution}"
        return f"{self.kind.value}/{self.name}{tail}"


def parse_allow(allow: Iterable[str]) -> tuple[AllowEntry, ...]:
    """Every entry of ``plugins.allow`` parsed; ``ValueError`` on the first bad one."""
    return tuple(AllowEntry.parse(text) for text in allow)


def allows(allow: Iterable[str], kind: Kind, name: str) -> bool:
    """Whether ``plugins.allow`` lists ``kind/name`` (from any distribution)."""
    return any(e.kind is kind and e.name == name for e in parse_allow(allow))


def _norm(name: str) -> str:
    """A distribution name as PyPA normalises it (``Acme_Plugins`` -> ``acme-plugins``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _dist_name(ep: EntryPoint) -> str | None:
    return None if ep.dist is None else _norm(ep.dist.name)


class State(StrEnum):
    """What became of a discovered plugin."""

    LOADED = "loaded"
    NOT_ALLOWLISTED = "not-allowlisted"
    UNAVAILABLE = "unavailable"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class PluginReport:
    """One discovered entry point and what became of it; ``plugin`` is set only when loaded."""

    kind: Kind
    name: str
    value: str
    distribution: str
    state: State
    reason: str = ""
    plugin: object | None = None

    def describe(self) -> str:
        """One line for people: ``notify/desktop (vaultd 0.1.0): loaded``."""
        tail = f": {self.reason}" if self.reason else ""
        return f"{self.kind.value}/{self.name} ({self.distribution}): {self.state.value}{tail}"

    def to_json(self) -> dict[str, str | bool]:
        """The report as a JSON-ready mapping (no plugin object)."""
        return {
            "kind": self.kind.value,
            "group": self.kind.group,
            "name": self.name,
            "value": self.value,
            "distribution": self.distribution,
            "allowlisted": self.state is not State.NOT_ALLOWLISTED,
            "state": self.state.value,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class LoadedPlugins:
    """Every discovered plugin's report, plus allowlisted names that no entry point offers."""

    reports: tuple[PluginReport, ...]
    missing: tuple[str, ...] = ()

    def _with(self, state: State) -> tuple[PluginReport, ...]:
        return tuple(r for r in self.reports if r.state is state)

    @property
    def loaded(self) -> tuple[PluginReport, ...]:
        """Plugins that loaded and are available."""
        return self._with(State.LOADED)

    @property
    def not_allowlisted(self) -> tuple[PluginReport, ...]:
        """Plugins skipped, never imported, because their name is not allowlisted."""
        return self._with(State.NOT_ALLOWLISTED)

    @property
    def unavailable(self) -> tuple[PluginReport, ...]:
        """Plugins that loaded but whose ``is_available()`` said no."""
        return self._with(State.UNAVAILABLE)

    @property
    def failed(self) -> tuple[PluginReport, ...]:
        """Plugins that raised while loading, building or checking availability."""
        return self._with(State.FAILED)

    def require(self, kind: Kind, name: str) -> object:
        """The loaded plugin ``kind/name``; ``PluginError`` (PLUGIN_UNAVAILABLE) otherwise."""
        found = [r for r in self.reports if r.kind is kind and r.name == name]
        for report in found:
            if report.state is State.LOADED and report.plugin is not None:
                return report.plugin
        for report in found:
            why = report.reason or report.state.value
            raise PluginError(
                f"plugin {kind.value}/{name} is {report.state.value} ({why}); requests "
                "that need it fail until it loads: see `vaultd plugins list`"
            )
        raise PluginError(
            f"plugin {kind.value}/{name} is not installed (no {kind.group} entry point of "
            f'that name); install it and add "{kind.value}/{name}" to plugins.allow'
        )

    def notifiers(self) -> tuple[Notifier, ...]:
        """The loaded notifiers, in discovery order."""
        return tuple(
            r.plugin
            for r in self.loaded
            if r.kind is Kind.NOTIFY and isinstance(r.plugin, Notifier)
        )


def discover(kinds: Iterable[Kind] = tuple(Kind)) -> dict[Kind, tuple[EntryPoint, ...]]:
    """The installed entry points of each kind, without importing anything."""
    return {kind: tuple(entry_points(group=kind.group)) for kind in kinds}


def load_plugins(allow: Sequence[str], kinds: Iterable[Kind] = tuple(Kind)) -> LoadedPlugins:
    """Load the allowlisted plugins of ``kinds``; report every discovered one.

    Never raises for a plugin; ``ValueError`` for an ``allow`` entry that is not
    ``GROUP/NAME[@DISTRIBUTION]`` (the settings refuse those at load).
    """
    kinds = tuple(kinds)
    entries = parse_allow(allow)
    reports: list[PluginReport] = []
    used: set[AllowEntry] = set()
    for kind, found in discover(kinds).items():
        selected = [(ep, [e for e in entries if e.selects(kind, ep)]) for ep in found]
        for ep, chosen in selected:
            used.update(chosen)
            twins = [other for other, by in selected if by and other.name == ep.name]
            reports.append(_load_one(kind, ep, bool(chosen), twins))
    missing = tuple(str(e) for e in entries if e not in used and e.kind in kinds)
    for name in missing:
        log.warning("plugin %r is allowlisted but no installed entry point matches it", name)
    return LoadedPlugins(tuple(reports), missing)


def _distribution(ep: EntryPoint) -> str:
    dist = ep.dist
    return "unknown" if dist is None else f"{dist.name} {dist.version}"


def _load_one(
    kind: Kind, ep: EntryPoint, allowed: bool, twins: Sequence[EntryPoint]
) -> PluginReport:
    def report(state: State, reason: str = "", plugin: object | None = None) -> PluginReport:
        made = PluginReport(kind, ep.name, ep.value, _distribution(ep), state, reason, plugin)
        if state in (State.FAILED, State.UNAVAILABLE):
            log.warning("plugin %s", made.describe())
        elif state is State.LOADED:
            log.info("plugin %s", made.describe())
        return made

    if not allowed:
        return report(State.NOT_ALLOWLISTED)
    if len(twins) > 1:
        sources = ", ".join(sorted(f"{_distribution(t)} ({t.value})" for t in twins))
        return report(
            State.FAILED,
            f"ambiguous: {len(twins)} entry points share it: {sources}; name one as "
            f"{kind.value}/{ep.name}@DISTRIBUTION in plugins.allow",
        )
    try:
        factory = ep.load()
        plugin = factory()
    except (Exception, SystemExit) as exc:
        return report(State.FAILED, f"load failed: {type(exc).__name__}: {exc}")
    version = getattr(plugin, "PLUGIN_API_VERSION", PLUGIN_API_VERSION)
    if version != PLUGIN_API_VERSION:
        return report(
            State.FAILED, f"built for plugin API {version}, this vaultd has {PLUGIN_API_VERSION}"
        )
    if not isinstance(plugin, Plugin) or not isinstance(plugin, _PROTOCOLS[kind]):
        wanted = " or ".join(p.__name__ for p in _PROTOCOLS[kind])
        return report(State.FAILED, f"{type(plugin).__name__} does not implement {wanted}")
    try:
        available = bool(plugin.is_available())
    except (Exception, SystemExit) as exc:
        return report(State.FAILED, f"is_available() raised {type(exc).__name__}: {exc}")
    if not available:
        return report(State.UNAVAILABLE, "is_available() returned False")
    return report(State.LOADED, plugin=plugin)


def notify_all(
    notifiers: Sequence[Notifier], event: NotifyEvent, *, timeout: float = 2.0
) -> threading.Thread:
    """Send ``event`` to every notifier, each in its own daemon thread; return at once.

    A notifier that raises is logged; one still running after ``timeout`` seconds is logged
    and abandoned. The returned supervisor thread ends when all are done or abandoned (join it
    only in tests).
    """

    def run(notifier: Notifier) -> None:
        try:
            notifier.notify(event)
        except Exception as exc:
            log.warning("notifier %s failed: %s: %s", _name(notifier), type(exc).__name__, exc)

    workers = [
        threading.Thread(target=run, args=(n,), name=f"vaultd-notify-{i}", daemon=True)
        for i, n in enumerate(notifiers)
    ]

    def supervise() -> None:
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.start()
        for worker, notifier in zip(workers, notifiers, strict=True):
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                log.warning("notifier %s overran %.1f s; abandoned", _name(notifier), timeout)

    supervisor = threading.Thread(target=supervise, name="vaultd-notify", daemon=True)
    supervisor.start()
    return supervisor


def _name(notifier: Notifier) -> str:
    return type(notifier).__name__


def doctor_lines(allow: Sequence[str]) -> list[str]:
    """Lines for ``vaultd doctor``: each discovered plugin's state and each missing name."""
    loaded = load_plugins(allow)
    lines = [report.describe() for report in loaded.reports]
    lines += [f"{name}: allowlisted but not installed" for name in loaded.missing]
    for report in loaded.loaded:
        if report.kind is Kind.KEYSTORE and not getattr(report.plugin, "is_hardware", True):
            lines.append(
                f"keystore/{report.name}: WARNING: a software key store; the key is only as "
                "safe as this user account"
            )
    return lines or ["no plugins installed"]
