"""Reads of user streams, shared by every transport (WebSocket, SSE, long-poll, inbox)."""

from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async
from django.db import connections
from django.db.models import Count, Max, Q
from django.utils import timezone

from .audience import stream_sql
from .models import Entry, Receipt, StreamState
from .receipts import delivered_through
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


def stream_summary_orm(user) -> tuple[int, int]:
    """``stream_summary`` through the ORM: the reference the fast path is tested against."""
    row = (
        Entry.objects.stream_for(user)
        .with_read(user)
        .aggregate(latest=Max("id"), unread=Count("id", filter=Q(is_read=False)))
    )
    return row["latest"] or 0, row["unread"]


def stream_summary(user, *, using: str = "default") -> tuple[int, int]:
    """Return ``(latest id, unread count)`` of ``user``'s stream in one query.

    Every handshake runs this, so it is one hand-written statement: building the
    equivalent ORM query (``stream_summary_orm``, same result) costs ~2 ms of CPU per
    call, which capped handshakes at a few hundred per second per process. The WHERE
    clause is ``notify.audience.stream_sql`` and the read test ``with_read``; a test
    checks the result against the ORM.
    """
    connection = connections[using]
    entry = Entry._meta.db_table
    receipt = Receipt._meta.db_table
    state = StreamState._meta.db_table
    adapt = connection.ops.adapt_datetimefield_value
    stream = stream_sql("e")
    sql = (
        f"SELECT (SELECT MAX(e.id) FROM {entry} e WHERE {stream}),"
        f" (SELECT COUNT(*) FROM {entry} e WHERE {stream}"
        f" AND e.id > COALESCE((SELECT s.read_through FROM {state} s WHERE s.user_id = %(user)s), 0)"
        f" AND NOT EXISTS (SELECT 1 FROM {receipt} r WHERE r.user_id = %(user)s AND r.entry_id = e.id))"
    )
    params = {"user": user.pk, "joined": adapt(user.date_joined), "now": adapt(timezone.now())}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        latest, unread = cursor.fetchone()
    return latest or 0, unread


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


def inbox_page(user, *, before: int | None, limit: int, unread: bool) -> list[dict[str, Any]]:
    """Return up to ``limit`` notification objects of ``user``'s stream, newest first,
    with id < ``before`` when given, unread ones only when ``unread``; each also has
    ``delivered`` (a device of the user acknowledged an id >= it, notify.receipts)."""
    rows = Entry.objects.stream_for(user).with_read(user)
    if unread:
        rows = rows.filter(is_read=False)
    if before is not None:
        rows = rows.filter(id__lt=before)
    delivered = delivered_through(user.pk)
    return [to_wire(row, read=row.is_read) | {"delivered": row.pk <= delivered} for row in rows.order_by("-id")[:limit]]


# Handshakes, polls and streams read through this: read-only, so it may run on any
# thread of the default executor (thread_sensitive=False). Concurrent handshakes then
# overlap their database round trips instead of queueing on asgiref's one sync thread.
aread_stream = database_sync_to_async(read_stream, thread_sensitive=False)


def unread_count(user) -> int:
    """Return the number of unread items in ``user``'s stream."""
    return Entry.objects.unread_for(user).count()
