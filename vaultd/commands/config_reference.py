"""`vaultd config-reference`: print the configuration reference generated from the model."""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from vaultd.commands._args import Subparsers
from vaultd.settings import ProfileSettings, Settings

HEADER = """# Configuration reference

Generated from `vaultd/settings.py` by `vaultd config-reference`; do not edit by hand.

Settings come from the TOML file `$VAULTD_CONFIG` (default `~/.config/vaultd/config.toml`;
it must be yours and not writable by others) and from `VAULTD_` environment variables, with
`__` between nested names (`VAULTD_PKCS11__TOKEN_LABEL`). Unknown keys are errors. There is
no PIN setting: see `pkcs11.pin_source`.
"""


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        return "see meaning"
    value: Any = info.default
    if isinstance(value, BaseModel):
        return "(table)"
    if value is None:
        return "unset"
    if isinstance(value, tuple):
        value = list(value)
    if hasattr(value, "value"):
        value = value.value
    return f"`{value!r}`".replace("'", '"')


def _type(info: FieldInfo) -> str:
    text = str(info.annotation).replace("typing.", "").replace("pathlib.", "")
    for noise in ("<class '", "'>", "vaultd.core.model.", "vaultd.settings."):
        text = text.replace(noise, "")
    return text.replace("|", "or")


def _table(title: str, model: type[BaseModel]) -> list[str]:
    lines = [f"\n## `{title}`\n", "| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for name, info in model.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            continue
        doc = " ".join((info.description or "").split()).replace("|", "\\|")
        lines.append(f"| `{name}` | {_type(info)} | {_default(info)} | {doc} |")
    return lines


def render() -> str:
    """The whole reference as Markdown."""
    lines = [HEADER.rstrip("\n"), *_table("top level", Settings)]
    for name, info in Settings.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            lines.extend(_table(f"[{name}]", ann))
    lines.extend(_table("[profiles.NAME]", ProfileSettings))
    return "\n".join(lines) + "\n"


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("config-reference", help="print every setting with its default (Markdown)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(render(), end="")
    return 0
