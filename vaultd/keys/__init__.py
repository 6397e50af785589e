"""Everything that seals and opens: the PKCS#11 token, key store plugins, the PIN."""
