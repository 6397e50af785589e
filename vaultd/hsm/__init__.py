"""PKCS#11 adapters: the only place that calls python-pkcs11."""
