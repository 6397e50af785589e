"""`vaultd config-reference`: print the configuration reference generated from the model."""

from __future__ import annotations

import argparse
import enum
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaultd.commands._args import Subparsers

if TYPE_CHECKING:
    from pydantic import BaseModel
    from pydantic.fields import FieldInfo

HEADER = """# Configuration reference

Generated from `vaultd/settings.py` by `vaultd config-reference`; do not edit by hand.

Settings come from the TOML file `$VAULTD_CONFIG` (default `~/.config/vaultd/config.toml`;
it must be yours and not writable by others) and from `VAULTD_` environment variables, with
`__` between nested names (`VAULTD_PKCS11__TOKEN_LABEL`). Unknown keys are errors. There is
no PIN setting: see `pkcs11.pin_source`.
"""


def _default(info: FieldInfo) -> str:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from pydantic import BaseModel

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


_SCALARS: dict[object, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "true or false",
    Path: "path",
}


def user_type(annotation: object) -> str:
    """A setting's type as a user writes it in TOML (``"code"``, ``list of strings``...)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        shown = [user_type(a) for a in args if a is not type(None)]
        optional = len(shown) < len(args)
        return " or ".join(shown) + (" (optional)" if optional else "")
    if origin is typing.Literal:
        return " or ".join(f'`"{a}"`' if isinstance(a, str) else f"`{a}`" for a in args)
    if origin in (tuple, list):
        return f"list of {user_type(args[0])}s" if args else "list"
    if origin is dict:
        return f"table of {user_type(args[1])}s" if len(args) == 2 else "table"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " or ".join(f'`"{member.value}"`' for member in annotation)
    if isinstance(annotation, type) and annotation.__name__.endswith("Settings"):
        return "table"
    return _SCALARS.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _table(title: str, model: type[BaseModel]) -> list[str]:
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from pydantic import BaseModel

    lines = [f"\n## `{title}`\n", "| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for name, info in model.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            continue
        doc = " ".join((info.description or "").split()).replace("|", "\\|")
        lines.append(f"| `{name}` | {user_type(info.annotation)} | {_default(info)} | {doc} |")
    return lines


def render() -> str:
    """The whole reference as Markdown."""
    # Lazy: not loaded by `vaultd --help`, which imports this module for its parser.
    from pydantic import BaseModel

    from vaultd.settings import ProfileSettings, Settings

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
