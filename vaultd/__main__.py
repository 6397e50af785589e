"""python -m vaultd."""

from vaultd.cli import main

raise SystemExit(main())
