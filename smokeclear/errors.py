"""Errors a user can cause and fix.

A :class:`UserError` carries what went wrong and how to fix it. The CLI prints it
as one line and exits non-zero, with no traceback: a traceback for a bad path or
a wrong flag tells the user nothing they can act on.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(Exception):
    """A problem the user can fix: bad path, bad flag, corrupt file, missing device."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.problem.rstrip('.')}. {self.fix}"


def exit_status(program: str, main: Callable[[], int]) -> int:
    """Run a tool's ``main``; a :class:`UserError` becomes one line on stderr and status 2."""
    try:
        return main()
    except UserError as error:
        print(f"{program}: error: {error}", file=sys.stderr)
        return 2


class FrameFormatError(ValueError):
    """A frame that cannot be turned into 8-bit BGR (wrong shape, dtype or channels)."""
