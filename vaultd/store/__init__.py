"""On-disk persistence: the sealed store, the state file and the audit log."""
