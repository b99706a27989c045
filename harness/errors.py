"""The one error type the CLI turns into ``error: ...`` and exit code 1."""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; the message says what and how."""
