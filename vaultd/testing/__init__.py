"""Test doubles and emulators for tests and the demo; production code never imports this."""
