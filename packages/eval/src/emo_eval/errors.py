"""Errors a user can cause; the CLI prints them as one line and exits with code 1."""


class EvalError(Exception):
    """A bad input (missing file, unpaired videos, unusable weights); the message says which."""
