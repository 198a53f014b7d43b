"""The one error type that means "the user can fix this": a bad argument, config value or environment.

`collector-ext` answers it with one line on stderr and exit code 2; every other exception is a bug and
surfaces as one (a traceback), never disguised as a user error.
"""

from __future__ import annotations


class UserError(Exception):
    """A bad argument, config value or environment, said in one sentence that names what to change."""
