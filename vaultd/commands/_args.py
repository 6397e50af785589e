"""Small helpers shared by subcommand modules."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vaultd.settings import Settings

Subparsers = argparse._SubParsersAction  # type: ignore[type-arg]


def settings() -> Settings:
    """Load settings (lazily: pydantic is imported only by commands that need it)."""
    from vaultd.settings import load_settings

    return load_settings()
