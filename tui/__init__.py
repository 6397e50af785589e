"""The Textual TUI (installed as vaultd.tui)."""
