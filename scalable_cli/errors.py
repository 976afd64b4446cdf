"""Errors a user sees: one ``Error: …`` line plus a hint, never a traceback."""

from __future__ import annotations


class ScalableError(Exception):
    """An error with a one-line message, an optional hint and an exit code."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ManifestError(ScalableError):
    """Bad input in a manifest: the message names file, line, column and key."""


class StateError(ScalableError):
    """A state file that cannot be read, written or locked."""


class PlanError(ScalableError):
    """A plan that cannot be made (infeasible objectives, stale saved plan…)."""
