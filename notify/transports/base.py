"""What every transport consumer shares: dispatch without Channels' per-message
connection sweep."""

from channels.consumer import get_handler_name


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
