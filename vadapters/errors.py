"""The few exception types vadapters raises.

Every message says what was expected, what was found, and how to fix it.
"""

from __future__ import annotations


class VAdaptersError(Exception):
    """Base class of every vadapters error."""


class UnknownMethodError(VAdaptersError, KeyError):
    """A method name that no installed method registered."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


class IncompatibleBaseError(VAdaptersError):
    """The adapter was made for another base model or host type than the one given."""


class CheckpointError(VAdaptersError):
    """A weight file or adapter folder is missing, corrupt, foreign, or does not match the adapter."""


class BadInputError(VAdaptersError, ValueError):
    """An argument has the wrong type, shape or range."""


class AdapterStateError(VAdaptersError, RuntimeError):
    """The requested operation does not fit the adapters' current state (e.g. editing while fused)."""
