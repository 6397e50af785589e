"""Small helpers shared by subcommand modules."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from vaultd.settings import Settings

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def settings() -> Settings:
    """Load settings (lazily: pydantic is imported only by commands that need it)."""
    from vaultd.settings import load_settings

    return load_settings()
