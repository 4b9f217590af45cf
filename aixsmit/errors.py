"""The one error type users see: a single clear line, with the exit code it maps to."""

from __future__ import annotations


class AixsmitError(Exception):
    """An error meant for the operator: ``str(err)`` is one line, no traceback is shown.

    ``code`` is the process exit status the command line uses for it.
    """

    def __init__(self, message: str, code: int = 1, details: list[str] | None = None):
        super().__init__(message)
        self.code = code
        # Extra lines shown after the message (for example the processes holding a busy mount).
        self.details = list(details or [])


class ConfigError(AixsmitError):
    """A broken configuration file; the message names file and line."""


class ParseError(AixsmitError):
    """Command output or a table that does not have the expected form; names the line."""
