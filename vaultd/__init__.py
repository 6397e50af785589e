"""vaultd: a local AWS credential vault sealed by a PKCS#11 token."""

__version__ = "0.1.0"
