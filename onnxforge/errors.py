"""User-facing errors and the exit codes they map to.

The CLI turns these into one or two lines on stderr and an exit code; anything
else that escapes is a bug and is reported as one (exit 3).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USER_ERROR = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130


class OnnxforgeError(Exception):
    """Base class: a message a person can act on, plus an exit code."""

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class UserInputError(OnnxforgeError):
    """The input is wrong: a missing file, a bad flag, a model that cannot be built (exit 2)."""

    exit_code = EXIT_USER_ERROR


class CheckFailed(OnnxforgeError):
    """A check ran and did not pass: parity, smoke, verify, strict fusion (exit 1)."""

    exit_code = EXIT_CHECK_FAILED
