"""Exceptions for expected failures.

Every :class:`DenoiseError` carries a message written for the user: what went
wrong and what to do. Hosts (the CLI, the Siril scripts) print the message
without a traceback; anything that is not a ``DenoiseError`` is a bug.
"""


class DenoiseError(Exception):
    """An expected failure with a message meant for the user."""


class InputError(DenoiseError):
    """The input data cannot be processed (NaN, constant, too small, wrong layout...)."""


class ModelError(DenoiseError):
    """A model file is missing, corrupt, or does not fit the data."""


class Cancelled(DenoiseError):
    """The user cancelled; nothing half-made was left behind."""

    def __init__(self, message: str = "Cancelled by the user; nothing was written.") -> None:
        super().__init__(message)
