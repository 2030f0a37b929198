"""Errors a user can cause; the CLI prints them as one line and exits with code 1.

Kept free of heavy imports so the CLI can catch them without loading the annotator.
"""


class AnnotateError(Exception):
    """Base of every user-facing error."""


class ConfigError(AnnotateError):
    """An option value outside what it can be (`AnnotateConfig`), named by its CLI flag."""


class RunError(AnnotateError):
    """A user mistake or unusable input/output directory."""


class MediaError(AnnotateError):
    """An input file cannot be used; the message is a human-readable reason for the index."""


class SampleMissing(AnnotateError):
    """A sample needs an optional data package that is not installed."""
