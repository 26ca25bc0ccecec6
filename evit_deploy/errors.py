"""User-facing errors: each carries a one-line message the CLI prints without a traceback."""

from __future__ import annotations


class EvitError(Exception):
    """Base class for errors caused by user input (bad names, files, settings)."""


class UnknownModelError(EvitError, KeyError):
    """A model name that is not in the zoo."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class CheckpointError(EvitError):
    """A checkpoint that is missing, unreadable, unsafe or does not fit the model."""


class ManifestError(EvitError):
    """An ``export.json`` that is missing, malformed, unsafe or does not match the folder's files."""


class NonFiniteOutput(EvitError):
    """A model gave NaN or Inf for an input: an error for that input, never a result."""


class MissingDependency(EvitError):
    """An optional dependency (an extra of this package) is not installed."""


def one_line(text: object, limit: int = 240) -> str:
    """``text`` (an exception or message from a library) on one line, cut at ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat[:limit] + ("..." if len(flat) > limit else "")
