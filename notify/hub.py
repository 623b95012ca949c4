"""Process-level fan-out: one channel-layer subscription per server process.

Every server process runs one ``Hub`` per event loop. The hub owns one channel
(``notify.hub.<random>``) in the group ``notify.hub`` and a local registry of the open
connections (``Subscriber`` objects: WebSocket consumers, SSE streams, held long-polls)
by user id. A send publishes ONE channel-layer message per send call to that group, so
every process receives it once, whatever the number of connections; the hub then hands
each entry to the local subscribers that may see it. Frames are encoded once per
process (``Push.ws_frame``, ``Push.sse_event``) and no database query runs on this path.

The channel layer is lossy by design (capacity, expiry, Redis outages). The database
is the truth: when the hub's subscription fails and comes back, every subscriber
re-reads its backlog after its cursor (``Subscriber.resync``).
"""

import asyncio
import functools
import logging
import time
import weakref
from collections import defaultdict
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from .conf import notify_settings
from .serializers import dumps

logger = logging.getLogger(__name__)

HUB_GROUP = "notify.hub"
# How long a new subscriber waits for the hub's layer subscription before it goes on
# from the database alone (CONTRACT §8: handshakes succeed while the layer is down).
SUBSCRIBE_WAIT_SECONDS = 3.0
# Re-join the hub group this often, well inside channels-redis' group_expiry.
GROUP_REFRESH_SECONDS = 3600.0
# Subscribers re-reading their backlog at once after a layer outage.
RESYNC_CONCURRENCY = 8


class Push:
    """One stream entry as it travels on the channel layer, with lazily encoded frames.

    Args:
        data: ``{"obj": <notification object>, "recipient": user pk or None,
            "group": audience group pk or None, "created": POSIX seconds,
            "expires": POSIX seconds or None}``.
    """

    __slots__ = ("id", "obj", "recipient", "group", "created", "expires", "_ws", "_sse")

    def __init__(self, data: dict[str, Any]):
        self.obj = data["obj"]
        self.id = self.obj["id"]
        self.recipient = data.get("recipient")
        self.group = data.get("group")
        self.created = data.get("created", 0.0)
        self.expires = data.get("expires")
        self._ws = None
        self._sse = None

    @property
    def ws_frame(self) -> str:
        """The WebSocket ``notification`` frame as JSON text, encoded once."""
        if self._ws is None:
            self._ws = dumps({"type": "notification", "notification": self.obj})
        return self._ws

    @property
    def sse_event(self) -> str:
        """The SSE ``notification`` event (HTML SSE spec: id/event/data lines and a
        blank line), encoded once."""
        if self._sse is None:
            self._sse = f"id: {self.id}\nevent: notification\ndata: {dumps(self.obj)}\n\n"
        return self._sse

    def visible_to(self, subscriber: "Subscriber", now: float) -> bool:
        """Whether ``subscriber``'s user is in this entry's audience (CONTRACT §1)."""
        if self.recipient is not None:
            return self.recipient == subscriber.user_id
        if self.created <= subscriber.joined:
            return False
        if self.group is not None and self.group not in subscriber.group_ids:
            return False
        return self.expires is None or self.expires > now


def entry_payload(entry) -> dict[str, Any]:
    """Return the channel-layer form of a freshly stored ``Entry`` (see ``Push``)."""
    from .serializers import to_wire

    return {
        "obj": to_wire(entry),
        "recipient": entry.recipient_id,
        "group": entry.audience_group_id,
        "created": entry.created_at.timestamp(),
        "expires": entry.expires_at.timestamp() if entry.expires_at else None,
    }


class Subscriber:
    """What the hub needs of an open connection; transports subclass it.

    Attributes set by the transport before ``Hub.subscribe``: ``user_id`` (int),
    ``group_ids`` (frozenset of Group pks), ``joined`` (the user's ``date_joined`` as
    POSIX seconds), ``token_id`` (the ApiToken pk of a token-authenticated
    connection, else None). ``cursor`` is the last id delivered. While ``pending`` is
    a list, pushes are buffered there (the backlog is being read); ``flush_pending``
    delivers them in order once the backlog is out.
    """

    user_id: int = 0
    group_ids: frozenset = frozenset()
    joined: float = 0.0
    token_id: int | None = None
    cursor: int = 0

    def __init__(self):
        self.pending: list[Push] | None = []
        self.last_sent = time.monotonic()

    def take_new(self, pushes: list[Push]) -> list[Push]:
        """Return the pushes after the cursor, in id order, and advance the cursor."""
        fresh = sorted((p for p in pushes if p.id > self.cursor), key=lambda p: p.id)
        if fresh:
            self.cursor = fresh[-1].id
        return fresh

    async def flush_pending(self) -> None:
        """Stop buffering and deliver what arrived while the backlog was read.

        Announcements are buffered unfiltered (``group_ids`` may still be loading)
        and checked against the audience here.
        """
        pending, self.pending = self.pending, None
        now = time.time()
        pending = [p for p in pending or () if p.visible_to(self, now)]
        if pending:
            await self.deliver(pending)

    async def deliver(self, pushes: list[Push]) -> None:
        """Send new entries (those with id > cursor) to the client."""
        raise NotImplementedError

    async def deliver_read(self, event: dict[str, Any]) -> None:
        """Send a ``read`` change (``ids`` or ``all``+``cursor``, and ``unread``)."""

    async def heartbeat(self) -> None:
        """Send a heartbeat after ``HEARTBEAT_SECONDS`` of silence."""

    async def revoke(self) -> None:
        """Close: the token that opened this connection was revoked."""

    async def resync(self) -> None:
        """Re-read the backlog after the cursor from the database and deliver it."""


class Hub:
    """The per-process, per-event-loop registry and channel-layer listener."""

    def __init__(self):
        self.by_user: dict[int, set[Subscriber]] = defaultdict(set)
        self.count = 0
        self._task: asyncio.Task | None = None
        self._ready: asyncio.Event | None = None

    async def subscribe(self, subscriber: Subscriber) -> None:
        """Register ``subscriber`` and wait (at most ``SUBSCRIBE_WAIT_SECONDS``) until
        the hub receives pushes, so a backlog read after this returns misses nothing.

        Does not raise when the channel layer is down: the subscriber then works from
        the database until the hub's subscription comes back and it is resynced.
        """
        self.by_user[subscriber.user_id].add(subscriber)
        self.count += 1
        if self._task is None or self._task.done():
            self._ready = asyncio.Event()
            self._task = asyncio.ensure_future(self._run())
        if not self._ready.is_set():
            try:
                await asyncio.wait_for(self._ready.wait(), SUBSCRIBE_WAIT_SECONDS)
            except asyncio.TimeoutError:
                logger.warning("notify hub: channel layer unavailable, serving from the database")

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Remove ``subscriber``; does nothing if it is not registered. The listener
        stops with the last subscriber."""
        subscribers = self.by_user.get(subscriber.user_id)
        if not subscribers or subscriber not in subscribers:
            return
        subscribers.discard(subscriber)
        self.count -= 1
        if not subscribers:
            del self.by_user[subscriber.user_id]
        if self.count == 0 and self._task is not None:
            self._task.cancel()
            self._task = None

    def subscribers(self):
        """Yield every local subscriber (a snapshot, safe against changes)."""
        for group in list(self.by_user.values()):
            yield from list(group)

    async def _run(self) -> None:
        layer = get_channel_layer(notify_settings.CHANNEL_LAYER_ALIAS)
        if layer is None:
            logger.error("notify hub: no channel layer configured; pushes are off")
            self._ready.set()
            return
        heartbeat = asyncio.ensure_future(self._heartbeat(layer))
        failures = 0
        try:
            while True:
                channel = None
                try:
                    channel = await layer.new_channel("notify.hub")
                    await layer.group_add(HUB_GROUP, channel)
                    self._channel = channel
                    self._ready.set()
                    if failures:
                        logger.warning("notify hub: channel layer back, resyncing")
                        asyncio.ensure_future(self._resync_all())
                    failures = 0
                    while True:
                        message = await layer.receive(channel)
                        await self.dispatch(message)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    failures += 1
                    logger.warning("notify hub: channel layer failed", exc_info=True)
                    # Subscribers waiting for the layer go on from the database.
                    self._ready.set()
                    await asyncio.sleep(min(0.25 * 2**failures, 5.0))
                finally:
                    if channel is not None:
                        await _quietly(layer.group_discard(HUB_GROUP, channel))
        finally:
            heartbeat.cancel()

    async def _heartbeat(self, layer) -> None:
        refreshed = time.monotonic()
        while True:
            period = notify_settings.HEARTBEAT_SECONDS
            await asyncio.sleep(max(0.2, min(2.0, period / 4)))
            now = time.monotonic()
            for subscriber in self.subscribers():
                if subscriber.pending is None and now - subscriber.last_sent >= period:
                    await _guard(subscriber.heartbeat())
            if now - refreshed > GROUP_REFRESH_SECONDS and getattr(self, "_channel", None):
                refreshed = now
                await _quietly(layer.group_add(HUB_GROUP, self._channel))

    async def _resync_all(self) -> None:
        semaphore = asyncio.Semaphore(RESYNC_CONCURRENCY)

        async def one(subscriber):
            async with semaphore:
                await _guard(subscriber.resync())

        await asyncio.gather(*(one(s) for s in self.subscribers()))

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Hand one channel-layer message to the local subscribers it concerns.

        Message types: ``notify.entries`` (``entries``: list of ``entry_payload``),
        ``notify.read`` (``user``, plus the ``read`` frame fields), ``notify.revoke``
        (``token``: ApiToken pk). Unknown types are ignored.
        """
        kind = message.get("type")
        if kind == "notify.entries":
            await self._dispatch_entries([Push(data) for data in message["entries"]])
        elif kind == "notify.read":
            for subscriber in list(self.by_user.get(message["user"], ())):
                await _guard(subscriber.deliver_read(message))
        elif kind == "notify.revoke":
            for subscriber in self.subscribers():
                if subscriber.token_id == message["token"]:
                    await _guard(subscriber.revoke())

    async def _dispatch_entries(self, pushes: list[Push]) -> None:
        personal: dict[int, list[Push]] = defaultdict(list)
        broadcast = []
        for push in pushes:
            if push.recipient is None:
                broadcast.append(push)
            else:
                personal[push.recipient].append(push)
        for user_id, own in personal.items():
            for subscriber in list(self.by_user.get(user_id, ())):
                await self._hand(subscriber, own)
        if broadcast:
            now = time.time()
            for subscriber in self.subscribers():
                if subscriber.pending is not None:
                    subscriber.pending.extend(broadcast)
                    continue
                visible = [p for p in broadcast if p.visible_to(subscriber, now)]
                if visible:
                    await _guard(subscriber.deliver(visible))

    async def _hand(self, subscriber: Subscriber, pushes: list[Push]) -> None:
        if subscriber.pending is not None:
            subscriber.pending.extend(pushes)
        else:
            await _guard(subscriber.deliver(pushes))


async def _guard(awaitable) -> None:
    """Await a delivery; one broken connection must not stop the fan-out."""
    try:
        await awaitable
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("notify hub: delivery failed")


async def _quietly(awaitable) -> None:
    try:
        await awaitable
    except Exception:
        pass


def buffered_bytes(send) -> int | None:
    """Return the bytes a connection has queued but not yet written to its socket.

    Args:
        send: the ASGI ``send`` callable of the connection. Under daphne it is
            ``functools.partial(server.handle_reply, protocol)``, whose Twisted
            transport keeps the write buffer.
    Returns:
        The byte count, or None where it cannot be known (another server, tests).
    """
    protocol = send.args[0] if isinstance(send, functools.partial) and send.args else None
    transport = getattr(protocol, "transport", None)
    try:
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    except (AttributeError, TypeError):
        return None


_hubs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub]" = weakref.WeakKeyDictionary()


def get_hub() -> Hub:
    """Return the hub of the running event loop, creating it on first use."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = Hub()
    return hub


async def apublish(message: dict[str, Any]) -> None:
    """Send one message to every process's hub through the channel layer.

    Does not raise when the layer fails (logged at WARNING): the database holds the
    entry, and clients get it at their next resume (CONTRACT §1).
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
