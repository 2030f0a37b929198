"""Errors a user can cause; the CLI prints them as one line and exits with code 1."""


class InferError(Exception):
    """A bad input (checkpoint, portrait, audio, speed, output path) or option."""
