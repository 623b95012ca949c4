"""Per-user preferences: muted kinds and kinds that never escalate to Web Push.

A preference is two lists of shell-style ``kind`` patterns (``fnmatch.fnmatchcase``:
``*`` crosses dots, so ``build.*`` matches ``build.failed`` and ``build.x.y``):

- ``muted``: the item is stored and delivered on every transport with
  ``"muted": true`` (fixed when stored); the browser shows it without a toast and it
  is never escalated.
- ``no_push``: delivered live as usual, never escalated.

Users without a stored row have the settings' defaults (``DEFAULT_MUTED``,
``DEFAULT_NO_PUSH``).
"""

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from .conf import notify_settings
from .exceptions import InvalidParameter
from .validation import check_text
from .models import Preference

FIELDS = ("muted", "no_push")
# Most patterns per list, and longest pattern (characters).
MAX_PATTERNS = 100
MAX_PATTERN_LENGTH = 64


@dataclass(frozen=True)
class Prefs:
    """One user's preferences: ``muted`` and ``no_push`` pattern tuples."""

    muted: tuple[str, ...] = ()
    no_push: tuple[str, ...] = ()

    def is_muted(self, kind: str) -> bool:
        """Whether ``kind`` matches a ``muted`` pattern."""
        return any(fnmatchcase(kind, pattern) for pattern in self.muted)

    def may_push(self, kind: str) -> bool:
        """Whether an item of ``kind`` may escalate to Web Push (not muted, not no_push)."""
        return not self.is_muted(kind) and not any(fnmatchcase(kind, p) for p in self.no_push)

    def as_json(self) -> dict[str, list[str]]:
        """``{"muted": [...], "no_push": [...]}``: the API's shape."""
        return {"muted": list(self.muted), "no_push": list(self.no_push)}


def defaults() -> Prefs:
    """The preferences of a user who never stored any (from settings)."""
    return Prefs(tuple(notify_settings.DEFAULT_MUTED), tuple(notify_settings.DEFAULT_NO_PUSH))


def _from_row(row: Preference) -> Prefs:
    return Prefs(tuple(row.muted), tuple(row.no_push))


def get_prefs(user_id: int) -> Prefs:
    """Return the preferences of the user with pk ``user_id``."""
    row = Preference.objects.filter(user_id=user_id).first()
    return _from_row(row) if row is not None else defaults()


def prefs_for(user_ids) -> dict[int, Prefs]:
    """Return ``{user pk: Prefs}`` for every pk in ``user_ids`` (one query)."""
    found = {row.user_id: _from_row(row) for row in Preference.objects.filter(user_id__in=list(user_ids))}
    base = defaults()
    return {pk: found.get(pk, base) for pk in user_ids}


def validate_prefs(value: Any) -> Prefs:
    """Check a ``PUT preferences/`` body.

    Returns:
        The ``Prefs`` it describes.
    Raises:
        InvalidParameter: naming the missing or unknown key, or the list holding a
            non-string, empty, too long pattern, or too many patterns
            (``muted[2]``-style names point at the element).
    """
    if not isinstance(value, dict):
        raise InvalidParameter("body", "must be a JSON object")
    for name in value:
        if name not in FIELDS:
            raise InvalidParameter(str(name)[:40], "is not a known field")
    lists = {}
    for name in FIELDS:
        if name not in value:
            raise InvalidParameter(name, "is required")
        patterns = value[name]
        if not isinstance(patterns, list):
            raise InvalidParameter(name, "must be a list of kind patterns")
        if len(patterns) > MAX_PATTERNS:
            raise InvalidParameter(name, f"at most {MAX_PATTERNS} patterns")
        for index, pattern in enumerate(patterns):
            if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN_LENGTH:
                raise InvalidParameter(
                    f"{name}[{index}]", f"must be a non-empty string of at most {MAX_PATTERN_LENGTH} characters"
                )
        check_text(name, patterns)
        lists[name] = tuple(dict.fromkeys(patterns))
    return Prefs(**lists)


def set_prefs(user, value: Any) -> Prefs:
    """Validate and store ``user``'s preferences, replacing both lists.

    Returns:
        The stored ``Prefs``.
    Raises:
        InvalidParameter: see ``validate_prefs``; nothing stored.
    """
    prefs = validate_prefs(value)
    Preference.objects.update_or_create(user=user, defaults={"muted": list(prefs.muted), "no_push": list(prefs.no_push)})
    return prefs
