"""EMO train package."""
