"""Code sources: AWS MFA codes from sealed seeds or code-source plugins."""
