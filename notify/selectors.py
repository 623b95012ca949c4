"""Reads of user streams, shared by every transport (WebSocket, SSE, long-poll, inbox)."""

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Max, Q

from .models import Entry
from .serializers import to_wire


@dataclass
class StreamRead:
    """What a transport needs when a client (re)connects.

    Attributes:
        latest: the user's cursor: the largest id in their stream, ``0`` when empty.
        unread: count of unread items.
        items: notification objects with id > the requested cursor, oldest first (at
            most ``limit``).
        more: more than ``limit`` items follow the requested cursor.
        group_ids: the pks of the user's groups (for announcement audiences).
    """

    latest: int = 0
    unread: int = 0
    items: list[dict[str, Any]] = field(default_factory=list)
    more: bool = False
    group_ids: frozenset = frozenset()


def stream_summary(user) -> tuple[int, int]:
    """Return ``(latest id, unread count)`` of ``user``'s stream in one query."""
    row = (
        Entry.objects.stream_for(user)
        .with_read(user)
        .aggregate(latest=Max("id"), unread=Count("id", filter=Q(is_read=False)))
    )
    return row["latest"] or 0, row["unread"]


def stream_after(user, *, cursor: int, limit: int) -> tuple[list[dict[str, Any]], bool]:
    """Return ``(items, more)``: up to ``limit`` notification objects of ``user``'s
    stream with id > ``cursor``, oldest first, and whether more follow."""
    rows = list(
        Entry.objects.stream_for(user).with_read(user).filter(id__gt=cursor).order_by("id")[: limit + 1]
    )
    return [to_wire(row, read=row.is_read) for row in rows[:limit]], len(rows) > limit


def read_stream(user, *, cursor: int | None, limit: int, groups: bool = False) -> StreamRead:
    """Read what a connecting client needs: summary, and the backlog after ``cursor``.

    Args:
        user: an active user.
        cursor: the client's ``since``; ``None`` reads no backlog (live from now).
        limit: most backlog items to return (count).
        groups: also load the user's group pks (for hub audience checks).
    Returns:
        A ``StreamRead``.
    """
    latest, unread = stream_summary(user)
    result = StreamRead(latest=latest, unread=unread)
    if cursor is not None and cursor < latest:
        result.items, result.more = stream_after(user, cursor=cursor, limit=limit)
    if groups:
        result.group_ids = frozenset(user.groups.values_list("id", flat=True))
    return result


def unread_count(user) -> int:
    """Return the number of unread items in ``user``'s stream."""
    return Entry.objects.unread_for(user).count()
