"""Planning the move from ``~/.aws/config`` and ``~/.aws/credentials`` (aws-vault style) to vaultd.

Pure: the parsed INI sections, the vaultd profiles and records already there go in; one
:class:`ProfilePlan` per profile comes out, saying what vaultd profile it becomes, which
plaintext key pair it seals, or why it is left alone.  `vaultd import aws-config` does the I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from pydantic import ValidationError

from vaultd.core.model import PROFILE_NAME_RE, LongTermCredentials
from vaultd.core.records import make_key_pair
from vaultd.errors import BadRequest
from vaultd.settings import ProfileSettings

KEY_ID = "aws_access_key_id"
SECRET = "aws_secret_access_key"  # noqa: S105 - an INI key name
SESSION_TOKEN = "aws_session_token"  # noqa: S105 - an INI key name
PLAINTEXT_KEYS = (KEY_ID, SECRET, SESSION_TOKEN)
"""Keys removed from the AWS files once the sealed copy has answered a test call."""

ROLE_KEYS = ("mfa_serial", "role_arn", "duration_seconds", "external_id", "role_session_name")
"""aws-vault's keys that move into the vaultd profile (and are commented out in ~/.aws/config)."""
MOVED_KEYS = (*ROLE_KEYS, "source_profile", "credential_process")
COPIED_KEYS = (*ROLE_KEYS, "region")
"""Keys copied into the vaultd profile; ``region`` stays in ~/.aws/config as well."""

Table = dict[str, str | int]
_BARE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class ProfilePlan:
    """What happens to one AWS profile."""

    name: str
    table: Table | None
    """The vaultd profile (``[profiles.NAME]``); ``None`` when the profile is left alone."""
    note: str = ""
    """Why it is left alone, or what the user still has to do."""
    keys: LongTermCredentials | None = field(default=None, repr=False)
    """The plaintext key pair found for it (sealed as record ``NAME``)."""
    in_vaultd: bool = False
    """The vaultd config already holds this exact profile."""

    @property
    def record(self) -> str | None:
        """The key pair record the profile reads, if any."""
        value = (self.table or {}).get("credentials")
        return value if isinstance(value, str) else None


def _keys_of(values: Mapping[str, str]) -> tuple[str, str] | None:
    if KEY_ID in values and SECRET in values:
        return values[KEY_ID], values[SECRET]
    return None


def _copied(values: Mapping[str, str]) -> Table:
    table: Table = {}
    for key in COPIED_KEYS:
        value = values.get(key, "").strip()
        if value:
            table[key] = int(value) if key == "duration_seconds" and value.isdigit() else value
    return table


def _check(name: str, table: Table) -> str:
    """'' when ``table`` is a valid vaultd profile, else the first problem in one line."""
    try:
        ProfileSettings.model_validate(table)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        return f"not a valid vaultd profile ({where}: {msg})" if where else msg
    return ""


class _Planner:
    def __init__(
        self,
        config: Mapping[str, Mapping[str, str]],
        credentials: Mapping[str, Mapping[str, str]],
        existing: Mapping[str, Mapping[str, object]],
        records: Collection[str],
        uses_vaultd: Callable[[str], bool],
    ) -> None:
        self.config = config
        self.credentials = credentials
        self.existing = existing
        self.records = records
        self.uses_vaultd = uses_vaultd

    def values(self, name: str) -> dict[str, str]:
        return {**self.config.get(name, {}), **self.credentials.get(name, {})}

    def chained_serials(self, source: str) -> set[str]:
        return {
            v["mfa_serial"]
            for n, v in self.config.items()
            if v.get("source_profile") == source and v.get("mfa_serial") and n != source
        }

    def plan(self, name: str) -> ProfilePlan:
        values = self.values(name)
        if name in self.existing and self.uses_vaultd(values.get("credential_process", "")):
            return self._done(name, values)
        if not PROFILE_NAME_RE.match(name):
            return ProfilePlan(name, None, "the name must match [A-Za-z0-9._-]{1,64}")
        if SESSION_TOKEN in values:
            return ProfilePlan(name, None, "temporary credentials (aws_session_token): not moved")
        if values.get("role_arn") and values.get("source_profile"):
            return self._role(name, values)
        if values.get("role_arn") and _keys_of(values) is None:
            return ProfilePlan(name, None, "a role without source_profile or keys: not moved")
        if _keys_of(values) or self.chained_serials(name) or values.get("mfa_serial"):
            return self._keys(name, values)
        return ProfilePlan(name, None, "no static keys and no role: nothing to move")

    def _done(self, name: str, values: Mapping[str, str]) -> ProfilePlan:
        table = {k: v for k, v in self.existing[name].items() if isinstance(v, str | int)}
        found = _keys_of(values)
        keys = make_key_pair(*found, root=False) if found and "credentials" in table else None
        return ProfilePlan(name, table, keys=keys, in_vaultd=True)

    def _finish(self, name: str, table: Table, keys: LongTermCredentials | None) -> ProfilePlan:
        problem = _check(name, table)
        if problem:
            return ProfilePlan(name, None, problem)
        in_vaultd = dict(self.existing.get(name, {})) == table
        if name in self.existing and not in_vaultd:
            return ProfilePlan(
                name, None, "vaultd already has a different profile of this name: left as is"
            )
        note = ""
        record = table.get("credentials")
        if record is not None and keys is None and record not in self.records:
            note = f"no plaintext keys found: store them with `vaultd add {record}`"
        return ProfilePlan(name, table, note, keys, in_vaultd)

    def _keys(self, name: str, values: Mapping[str, str]) -> ProfilePlan:
        found = _keys_of(values)
        try:
            keys = make_key_pair(*found, root=False) if found else None
        except BadRequest as exc:
            return ProfilePlan(name, None, f"its key pair is not importable: {exc}")
        table: Table = {"credentials": name, **_copied(values)}
        table.pop("duration_seconds", None)  # aws-vault's duration is the role's, not the session's
        if "mfa_serial" not in table:
            serials = self.chained_serials(name)
            if len(serials) != 1:
                return ProfilePlan(
                    name,
                    None,
                    "no mfa_serial: vaultd makes every session with MFA; add mfa_serial = "
                    f"arn:aws:iam::ACCOUNT:mfa/NAME to [{_section(name)}] and run again",
                )
            table["mfa_serial"] = serials.pop()
        return self._finish(name, table, keys)

    def _role(self, name: str, values: Mapping[str, str]) -> ProfilePlan:
        source = values["source_profile"]
        source_values = self.values(source)
        if source_values.get("role_arn") and source_values.get("source_profile"):
            return ProfilePlan(
                name, None, f"chains from role {source!r}: vaultd cannot chain roles"
            )
        table: Table = {"source_profile": source, **_copied(values)}
        source_plan = self.plan(source)
        if source_plan.table is None:
            return ProfilePlan(name, None, f"its source profile {source!r} is not moved")
        return self._finish(name, table, None)


def _section(name: str) -> str:
    return "default" if name == "default" else f"profile {name}"


def plan_import(
    config: Mapping[str, Mapping[str, str]],
    credentials: Mapping[str, Mapping[str, str]],
    *,
    existing: Mapping[str, Mapping[str, object]],
    records: Collection[str],
    uses_vaultd: Callable[[str], bool],
    only: Collection[str] = (),
) -> list[ProfilePlan]:
    """One plan per AWS profile (those named in ``only`` and their sources, if given).

    ``config`` maps profile names to ``~/.aws/config`` keys, ``credentials`` to
    ``~/.aws/credentials`` keys; ``existing`` holds the vaultd profiles already configured
    (non-default fields), ``records`` the stored key pair names, and ``uses_vaultd`` tells
    whether a ``credential_process`` command is vaultd's.
    """
    planner = _Planner(config, credentials, existing, records, uses_vaultd)
    names = sorted(set(config) | set(credentials))
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise BadRequest(f"no such AWS profile: {', '.join(unknown)}")
        wanted = set(only)
        wanted |= {s for n in only if (s := planner.values(n).get("source_profile"))}
        names = [n for n in names if n in wanted]
    return [planner.plan(name) for name in names]


def render_profiles(plans: Collection[ProfilePlan]) -> str:
    """``[profiles.NAME]`` TOML tables for the plans not yet in the vaultd config."""
    out = []
    for plan in plans:
        if plan.table is None or plan.in_vaultd:
            continue
        key = plan.name if _BARE_KEY_RE.match(plan.name) else json.dumps(plan.name)
        lines = [f"\n[profiles.{key}]"]
        lines += [
            f"{k} = {v if isinstance(v, int) else json.dumps(v)}" for k, v in plan.table.items()
        ]
        out.append("\n".join(lines) + "\n")
    return "".join(out)
