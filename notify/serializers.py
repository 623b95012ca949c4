"""The one wire shape of a stream item, shared by every transport (docs/protocol.md §1)."""

import json
from datetime import datetime, timezone
from typing import Any


def format_timestamp(value: datetime) -> str:
    """Return ``value`` as ISO 8601 in UTC with microseconds and a ``Z`` suffix."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_wire(entry, *, read: bool = False) -> dict[str, Any]:
    """Return the notification object of docs/protocol.md §1 for an ``Entry``.

    Args:
        entry: a ``notify.models.Entry`` (notification or announcement).
        read: whether the reading user has read it.
    Returns:
        ``{"id", "kind", "title", "body", "level", "url", "data", "created_at", "read",
        "muted"}``; ``data`` is ``{}`` when empty, never ``None``; ``muted`` is whether
        the recipient had muted the kind when it was stored (notify.preferences).
    """
    return {
        "id": entry.pk,
        "kind": entry.kind,
        "title": entry.title,
        "body": entry.body,
        "level": entry.level,
        "url": entry.url,
        "data": entry.data or {},
        "created_at": format_timestamp(entry.created_at),
        "read": read,
        "muted": entry.muted,
    }


def dumps(value: Any) -> str:
    """Encode ``value`` as compact UTF-8 JSON text (``separators=(",", ":")``,
    ``ensure_ascii=False``), the encoding every frame and size limit uses."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
