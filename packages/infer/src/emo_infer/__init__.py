"""EMO infer package."""
