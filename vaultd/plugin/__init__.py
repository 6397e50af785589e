"""The plugin API (the only surface plugins import) and the entry-point registry."""
