"""Subcommands of the vaultd CLI, each imported lazily by vaultd.cli."""
