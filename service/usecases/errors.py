"""What a use case refuses with, in the domain's words: the entry points map each to a status."""
from __future__ import annotations


class NotFound(LookupError):
    """The application, user, case or receipt is unknown (404)."""


class Conflict(RuntimeError):
    """The request contradicts what is stored: another payload for the same application, a
    loan no longer cancellable, a case reviewed differently (409)."""
