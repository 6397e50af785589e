"""Pure domain core: no I/O, no hardware, no UI (imports only the stdlib and vaultd.errors)."""
