"""What every transport consumer shares: dispatch without Channels' per-message
connection sweep, and the bound on what a slow reader may hold in memory."""

import logging

from channels.consumer import get_handler_name

from .. import metrics
from ..conf import notify_settings
from ..logging import log_fields
from ..realtime import daphne

logger = logging.getLogger("notify")


def drop_if_slow(consumer, label: str) -> bool:
    """Drop the connection of ``consumer`` when more than ``MAX_SEND_BUFFER_BYTES`` are
    queued unsent for it: a client that does not read must not grow the server's memory
    without bound; it resumes from its cursor when it reconnects.

    Args:
        consumer: a WebSocket or SSE consumer (``base_send``, ``user``, ``transport``).
        label: how the log names the connection (``"WebSocket"``, ``"SSE stream"``).
    Returns:
        Whether it was dropped (never under a server whose buffer cannot be read).
    """
    backlog = daphne.buffered_bytes(consumer.base_send)
    if backlog is None or backlog <= notify_settings.MAX_SEND_BUFFER_BYTES:
        return False
    logger.warning("notify: closing slow %s of user %s (%d bytes unsent)", label, consumer.user.pk, backlog,
                   extra=log_fields(f"{consumer.transport}.slow_client_dropped", consumer, unsent_bytes=backlog))
    metrics.slow_client_dropped()
    daphne.drop(consumer.base_send)
    return True


class DirectDispatch:
    """Consumer mixin: dispatch without Channels' per-message ``close_old_connections``.

    Channels 4.2+ awaits ``aclose_old_connections()`` (a hop to the one thread-sensitive
    sync thread) before every handler: per handshake, per client frame, per finished
    long-poll. With thousands of connections those hops queue behind each other. Every
    handler here reaches the database only through ``database_sync_to_async``, which
    closes stale connections itself, so the sweep is redundant.
    """

    async def dispatch(self, message):
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)
