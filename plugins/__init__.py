"""First-party plugins (installed as vaultd.plugins), each reached only through an entry point."""
