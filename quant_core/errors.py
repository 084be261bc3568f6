"""Base error of qonline's domain: every error a user can cause by input or configuration."""

from __future__ import annotations


class QonlineError(Exception):
    """An error caused by input, configuration or the state of an outside system.

    Its message is a complete sentence for a person: it names the input, the row or field, and the
    rule that was broken. The CLI prints it as one paragraph and exits non-zero.
    """


class ConfigError(QonlineError, ValueError):
    """A setting or configuration file is invalid."""


class CalendarError(QonlineError, ValueError):
    """A date cannot be aligned or shifted on the trading calendar."""


class LakeError(QonlineError):
    """The lake cannot be read or written (corrupt file, unreachable endpoint, conflicting writer)."""
