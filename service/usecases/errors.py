"""What a use case refuses with, in the domain's words: the entry points map each to a status."""
from __future__ import annotations

from typing import Mapping

from service.domain.rulebook import RulesError


class NotFound(LookupError):
    """The application, user, case or receipt is unknown (404)."""


class Conflict(RuntimeError):
    """The request contradicts what is stored: another payload for the same application, a
    loan no longer cancellable, a case reviewed differently (409)."""


class Forbidden(PermissionError):
    """The caller may not do this, whatever its key: an override's requester approving it (403)."""


class KitConflict(RulesError):
    """The rules version was archived with another policy test kit, which stays its kit: a
    refused version archived again without its tests, or with easier ones, stays refused."""

    @classmethod
    def between(cls, version: str, stored: Mapping[str, bytes], given: Mapping[str, bytes]) -> "KitConflict":
        if not stored or not given:
            difference = "archived with no kit" if not stored else "none given"
        else:
            difference = "files that differ: " + ", ".join(
                sorted(n for n in {*stored, *given} if stored.get(n) != given.get(n)))
        return cls(f"rules {version} were archived with another policy test kit ({difference}): "
                   "a version's kit cannot be replaced. Change the rules (a new version), or archive "
                   "them with the kit they were archived with.")
