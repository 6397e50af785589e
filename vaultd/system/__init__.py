"""The host: clocks, process hardening, descriptions of peer processes."""
