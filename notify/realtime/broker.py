"""The channel-layer messages between server processes, built and published here only.

Every process's hub is in the group ``HUB_GROUP``. A write publishes ONE message per
call to that group (``notify.entries`` in chunks of ``PUSH_CHUNK`` entries,
``notify.read``, ``notify.revoke``), so every process receives it once whatever its
number of connections. The layer is lossy by design; the database is the truth
(``notify.realtime.sequencer``).
"""

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from ..conf import notify_settings

logger = logging.getLogger(__name__)

HUB_GROUP = "notify.hub"
# Entries per channel-layer message: keeps one message well under a MiB.
PUSH_CHUNK = 500


def entry_payload(entry) -> dict[str, Any]:
    """Return the channel-layer form of a freshly stored ``Entry`` (see ``Push``)."""
    from ..serializers import to_wire

    return {
        "obj": to_wire(entry),
        "recipient": entry.recipient_id,
        "group": entry.audience_group_id,
        "created": entry.created_at.timestamp(),
        "expires": entry.expires_at.timestamp() if entry.expires_at else None,
    }


def entries_messages(entries) -> list[dict[str, Any]]:
    """Return the ``notify.entries`` messages for freshly committed ``Entry`` rows:
    ``{"type": "notify.entries", "entries": [entry_payload, ...]}``, ``PUSH_CHUNK`` a
    message."""
    payloads = [entry_payload(entry) for entry in entries]
    return [{"type": "notify.entries", "entries": payloads[start : start + PUSH_CHUNK]}
            for start in range(0, len(payloads), PUSH_CHUNK)]


def read_message(user_id: int, *, unread: int, ids: list[int] | None = None, cursor: int | None = None
                 ) -> dict[str, Any]:
    """Return a ``notify.read`` message: ``ids`` newly read, or (``ids=None``) every item
    up to ``cursor``; ``unread`` is the user's unread count after."""
    if ids is None:
        return {"type": "notify.read", "user": user_id, "all": True, "cursor": cursor, "unread": unread}
    return {"type": "notify.read", "user": user_id, "ids": ids, "unread": unread}


def revoke_message(token_id: int) -> dict[str, Any]:
    """Return a ``notify.revoke`` message: close what the token ``token_id`` opened."""
    return {"type": "notify.revoke", "token": token_id}


async def apublish(message: dict[str, Any]) -> None:
    """Send one message to every process's hub through the channel layer.

    Does not raise when the layer fails (logged at WARNING): the database holds the
    entry, and clients get it at their next resume (docs/protocol.md §1).
    """
    layer = get_channel_layer(notify_settings.CHANNEL_LAYER_ALIAS)
    if layer is None:
        return
    try:
        await layer.group_send(HUB_GROUP, message)
    except Exception:
        logger.warning("notify: push of %s failed; clients resume from the database", message.get("type"), exc_info=True)


def publish(message: dict[str, Any]) -> None:
    """Synchronous ``apublish`` for sync code (services, admin, commands)."""
    async_to_sync(apublish)(message)


def publish_entries(entries) -> None:
    """Publish freshly committed entries to every process's hub (``entries_messages``)."""
    for message in entries_messages(entries):
        publish(message)
