"""AWS adapters: the only place that calls STS and IAM."""
