"""Process-level fan-out: one channel-layer subscription per server process.

Every server process runs one ``Hub`` per event loop. The hub owns one channel
(``notify.hub.<random>``) in the group ``notify.hub`` and a local registry of the open
connections (``Subscriber`` objects: WebSocket consumers, SSE streams, held long-polls)
by user id. A send publishes ONE channel-layer message per send call to that group, so
every process receives it once, whatever the number of connections; the hub then hands
each entry to the local subscribers that may see it. Frames are encoded once per
process (``Push.ws_frame``, ``Push.sse_event``).

The channel layer is lossy by design (capacity, expiry, Redis outages) and the
in-memory layer reaches no other process. The database is the truth: the hub also
tails it (``db_tail_seconds``), reads gaps from it, and catches up from it when its
subscription comes back after an outage, all through one ordering rule
(``notify.sequencer``).
"""

import asyncio
import functools
import itertools
import logging
import struct
import time
import weakref
from collections import defaultdict
from typing import Any

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db.models import Max

from . import metrics
from .conf import notify_settings
from .logging import log_fields
from .sequencer import Sequencer
from .serializers import dumps

logger = logging.getLogger(__name__)

HUB_GROUP = "notify.hub"
# How long a new subscriber waits for the hub's layer subscription before it goes on
# from the database alone (docs/protocol.md §8: handshakes succeed while the layer is down).
SUBSCRIBE_WAIT_SECONDS = 3.0
# Re-join the hub group this often (seconds), well inside channels-redis' group_expiry
# (300 s in config/settings.py).
GROUP_REFRESH_SECONDS = 60.0
# The database tail's default period on a shared channel layer (seconds): a safety
# net for a push lost at the tail of a burst; see ``db_tail_seconds``.
DB_TAIL_SHARED_SECONDS = 3.0
# The fan-out loop yields to the event loop after this many connections, so that
# one broadcast to 10,000 connections does not hold the loop for its whole length.
YIELD_EVERY = 1000
# How often the hub closes connections of revoked tokens and deactivated users that no
# channel-layer message told it about (seconds).
CREDENTIALS_CHECK_SECONDS = 15.0


class Push:
    """One stream entry as it travels on the channel layer, with lazily encoded frames.

    Args:
        data: ``{"obj": <notification object>, "recipient": user pk or None,
            "group": audience group pk or None, "created": POSIX seconds,
            "expires": POSIX seconds or None, "committed": POSIX seconds of the commit,
            only in a push (for ``notify_delivery_latency_seconds``)}``.
    """

    __slots__ = ("id", "obj", "recipient", "group", "created", "expires", "committed", "_json", "_ws", "_wire",
                 "_sse")

    def __init__(self, data: dict[str, Any]):
        self.obj = data["obj"]
        self.id = self.obj["id"]
        self.recipient = data.get("recipient")
        self.group = data.get("group")
        self.created = data.get("created", 0.0)
        self.expires = data.get("expires")
        self.committed = data.get("committed")
        self._json = None
        self._ws = None
        self._wire = None
        self._sse = None

    @property
    def json(self) -> str:
        """The notification object as compact JSON text, encoded once."""
        if self._json is None:
            self._json = dumps(self.obj)
        return self._json

    @property
    def ws_frame(self) -> str:
        """The WebSocket ``notification`` frame as JSON text, encoded once."""
        if self._ws is None:
            self._ws = f'{{"type":"notification","notification":{self.json}}}'
        return self._ws

    @property
    def ws_wire(self) -> bytes:
        """``ws_frame`` as a complete WebSocket text frame on the wire, encoded once
        (see ``SocketWriter``)."""
        if self._wire is None:
            self._wire = text_frame(self.ws_frame.encode())
        return self._wire

    @property
    def sse_event(self) -> str:
        """The SSE ``notification`` event (HTML SSE spec: id/event/data lines and a
        blank line), encoded once."""
        if self._sse is None:
            self._sse = f"id: {self.id}\nevent: notification\ndata: {self.json}\n\n"
        return self._sse

    def visible_to(self, subscriber: "Subscriber", now: float) -> bool:
        """Whether ``subscriber``'s user is in this entry's audience (docs/protocol.md §1)."""
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
    connection, else None). ``cursor`` is the last id delivered. ``transport`` names
    the kind for metrics and logs; ``connection_id`` is unique in the process.

    While ``pending`` is a list (from ``__init__`` until the transport has sent its
    first frame and backlog), whatever the hub hands over waits: pushes in
    ``pending``, ``read`` changes in ``pending_reads``; ``flush_pending`` then delivers
    them in that order, so nothing overtakes ``hello`` (docs/protocol.md §3) or the SSE
    response headers.
    """

    user_id: int = 0
    group_ids: frozenset = frozenset()
    joined: float = 0.0
    token_id: int | None = None
    cursor: int = 0
    transport: str = "websocket"

    def __init__(self):
        self.connection_id = next(_connection_ids)
        self.pending: list[Push] | None = []
        self.pending_reads: list[dict[str, Any]] = []
        self.last_sent = time.monotonic()

    def take_new(self, pushes: list[Push]) -> list[Push]:
        """Return the pushes after the cursor, in id order, and advance the cursor.

        Only safe because the hub hands pushes over in id order with no unresolved gap
        (``notify.sequencer``): the cursor may then pass every id it skips.
        """
        fresh = sorted((p for p in pushes if p.id > self.cursor), key=lambda p: p.id)
        if fresh:
            self.cursor = fresh[-1].id
        return fresh

    async def hand(self, pushes: list[Push]) -> None:
        """Deliver ``pushes`` (in id order, visible to this user), or keep them for
        ``flush_pending`` while the first frames are not out."""
        if self.pending is not None:
            self.pending.extend(pushes)
        else:
            await self.deliver(pushes)

    async def hand_read(self, event: dict[str, Any]) -> None:
        """Deliver a ``read`` change, or keep it for ``flush_pending``."""
        if self.pending is not None:
            self.pending_reads.append(event)
        else:
            await self.deliver_read(event)

    async def flush_pending(self) -> None:
        """Stop buffering and deliver what arrived while the backlog was read: the
        pushes after the cursor, then the ``read`` changes, each in arrival order.

        Announcements are buffered unfiltered (``group_ids`` may still be loading)
        and checked against the audience here.
        """
        pending, self.pending = self.pending, None
        reads, self.pending_reads = self.pending_reads, []
        now = time.time()
        pending = [p for p in pending or () if p.visible_to(self, now)]
        if pending:
            await self.deliver(pending)
        for event in reads:
            await self.deliver_read(event)

    async def deliver(self, pushes: list[Push]) -> None:
        """Send new entries (those with id > cursor) to the client."""
        raise NotImplementedError

    async def deliver_read(self, event: dict[str, Any]) -> None:
        """Send a ``read`` change (``ids`` or ``all``+``cursor``, and ``unread``)."""

    async def heartbeat(self) -> None:
        """Send a heartbeat after ``HEARTBEAT_SECONDS`` of silence."""

    async def revoke(self) -> None:
        """Close: the token that opened this connection was revoked."""

    async def drain(self, delay_ms: int) -> None:
        """This process is stopping (``notify.drain``): tell the client to reconnect
        elsewhere after ``delay_ms`` milliseconds, with its cursor, and leave the hub."""


_connection_ids = itertools.count(1)


def db_tail_seconds(layer) -> float:
    """Return the database tail period in seconds (0: off): ``DB_TAIL_SECONDS``, or
    by default 1 s on the in-memory layer (which reaches no other process) and
    ``DB_TAIL_REDIS_SECONDS`` on a shared one (a safety net for lost pushes)."""
    configured = notify_settings.DB_TAIL_SECONDS
    if configured is not None:
        return float(configured)
    if layer is None or isinstance(layer, InMemoryChannelLayer):
        return 1.0
    return DB_TAIL_SHARED_SECONDS


class Hub:
    """The per-process, per-event-loop registry and channel-layer listener.

    Entries come in from three places: channel-layer pushes, the database tail (every
    ``db_tail_seconds``, the newest committed id is compared with the watermark) and the
    catch-up after a layer outage (the same tail read, at once). All three go through
    one ``Sequencer``, which releases them in id order with every gap resolved (see
    ``notify.sequencer``); the hub then hands each released batch to the local
    subscribers that may see it, each getting its own entries in id order.
    """

    def __init__(self):
        self.by_user: dict[int, set[Subscriber]] = defaultdict(set)
        self.count = 0
        self._task: asyncio.Task | None = None
        self._ready: asyncio.Event | None = None
        self._channel: str | None = None
        self.sequencer = Sequencer(self._dispatch_entries, _read_range, _read_ids)
        self.catch_ups = 0  # times the hub read what it missed after a layer outage

    async def subscribe(self, subscriber: Subscriber) -> None:
        """Register ``subscriber`` and wait (at most ``SUBSCRIBE_WAIT_SECONDS``) until
        the hub has its watermark and receives pushes, so a backlog read after this
        returns misses nothing.

        Does not raise when the channel layer is down: the hub then works from the
        database tail until its subscription comes back.
        """
        self.by_user[subscriber.user_id].add(subscriber)
        self.count += 1
        metrics.connection_opened(subscriber.transport)
        if self._task is None or self._task.done():
            self._ready = asyncio.Event()
            self._task = asyncio.ensure_future(self._run())
        if not self._ready.is_set():
            try:
                await asyncio.wait_for(self._ready.wait(), SUBSCRIBE_WAIT_SECONDS)
            except asyncio.TimeoutError:
                logger.warning("notify hub: channel layer unavailable, serving from the database",
                               extra=log_fields("hub.layer_unavailable", subscriber))

    @property
    def listening(self) -> bool:
        """Whether the listener runs (it does while any connection is registered) and
        has tried to subscribe at least once."""
        return self._task is not None and not self._task.done() and self._ready.is_set()

    @property
    def subscribed(self) -> bool:
        """Whether the hub's channel-layer subscription currently stands."""
        return self._channel is not None

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Remove ``subscriber``; does nothing if it is not registered. The listener
        stops with the last subscriber."""
        subscribers = self.by_user.get(subscriber.user_id)
        if not subscribers or subscriber not in subscribers:
            return
        subscribers.discard(subscriber)
        self.count -= 1
        metrics.connection_closed(subscriber.transport)
        if not subscribers:
            del self.by_user[subscriber.user_id]
        if self.count == 0 and self._task is not None:
            self._task.cancel()
            self._task = None
            # Nobody listens until the next start, which reads the newest id again.
            self.sequencer.reset()

    def subscribers(self):
        """Yield every local subscriber (a snapshot, safe against changes)."""
        for group in list(self.by_user.values()):
            yield from list(group)

    async def _run(self) -> None:
        layer = get_channel_layer(notify_settings.CHANNEL_LAYER_ALIAS)
        maintenance = None
        try:
            while self.sequencer.high is None:
                try:
                    await self.sequencer.start(await _alatest_id())
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.warning("notify hub: could not read the newest id", exc_info=True,
                                   extra=log_fields("hub.latest_id_failed"))
                    self._ready.set()
                    await asyncio.sleep(1.0)
            maintenance = asyncio.ensure_future(self._maintain(layer))
            if layer is None:
                logger.error("notify hub: no channel layer configured; live pushes come from the database tail",
                             extra=log_fields("hub.no_layer"))
                self._ready.set()
                await asyncio.Event().wait()
            await self._listen(layer)
        finally:
            if maintenance is not None:
                maintenance.cancel()

    async def _listen(self, layer) -> None:
        failures = 0
        while True:
            channel = None
            try:
                channel = await layer.new_channel("notify.hub")
                await layer.group_add(HUB_GROUP, channel)
                self._channel = channel
                self._ready.set()
                if failures:
                    # Pushes sent while the layer was away are lost: read them.
                    logger.warning("notify hub: channel layer back, catching up from the database",
                                   extra=log_fields("hub.catch_up", connections=self.count, failures=failures))
                    self.catch_ups += 1
                    await self.sequencer.tail(await _alatest_id())
                failures = 0
                while True:
                    message = await layer.receive(channel)
                    await self.dispatch(message)
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                self._channel = None
                logger.warning("notify hub: channel layer failed", exc_info=True,
                               extra=log_fields("hub.layer_failed", connections=self.count, failures=failures))
                # Subscribers waiting for the layer go on from the database.
                self._ready.set()
                await asyncio.sleep(min(0.25 * 2**failures, 5.0))
            finally:
                if channel is not None:
                    await _quietly(layer.group_discard(HUB_GROUP, channel))

    async def _maintain(self, layer) -> None:
        """Heartbeats, the group refresh and the credentials check; the database tail
        runs beside them (``_tail``)."""
        refreshed = checked = time.monotonic()
        wall = time.time()
        tail_period = db_tail_seconds(layer)
        tail = asyncio.ensure_future(self._tail(tail_period)) if tail_period > 0 else None
        try:
            while True:
                period = notify_settings.HEARTBEAT_SECONDS
                await asyncio.sleep(max(0.2, min(2.0, period / 4)))
                now = time.monotonic()
                for subscriber in self.subscribers():
                    if subscriber.pending is None and now - subscriber.last_sent >= period:
                        await _guard(subscriber.heartbeat())
                if now - refreshed > GROUP_REFRESH_SECONDS and self._channel:
                    refreshed = now
                    await _quietly(layer.group_add(HUB_GROUP, self._channel))
                if now - checked > CREDENTIALS_CHECK_SECONDS:
                    checked, since, wall = now, wall, time.time()
                    try:
                        await self._check_credentials(since)
                    except Exception:
                        logger.warning("notify hub: credentials check failed", exc_info=True,
                                       extra=log_fields("hub.credentials_check_failed"))
        finally:
            if tail is not None:
                tail.cancel()

    async def _tail(self, period: float) -> None:
        """Every ``period`` seconds, release committed entries no push announced."""
        while True:
            await asyncio.sleep(period)
            try:
                await self.sequencer.tail(await _alatest_id())
            except Exception:
                logger.warning("notify hub: database tail failed", exc_info=True, extra=log_fields("hub.tail_failed"))

    async def _check_credentials(self, since: float) -> None:
        """Close connections whose token was revoked since ``since`` (POSIX seconds) or
        whose user was deactivated.

        ``notify_token --revoke`` also publishes ``notify.revoke``; this check is what
        closes them when no shared channel layer carried that message (the in-memory
        layer in another process) or it was lost.
        """
        subscribers = list(self.subscribers())
        token_ids = {s.token_id for s in subscribers if s.token_id is not None}
        user_ids = {s.user_id for s in subscribers}
        revoked, inactive = await database_sync_to_async(_lapsed_credentials)(since, token_ids, user_ids)
        for subscriber in subscribers:
            if subscriber.token_id in revoked or subscriber.user_id in inactive:
                await _guard(subscriber.revoke())

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Hand one channel-layer message to the local subscribers it concerns.

        Message types: ``notify.entries`` (``entries``: list of ``entry_payload``),
        ``notify.read`` (``user``, plus the ``read`` frame fields), ``notify.revoke``
        (``token``: ApiToken pk). Unknown types are ignored.
        """
        kind = message.get("type")
        if kind == "notify.entries":
            await self.sequencer.add(Push(data) for data in message["entries"])
        elif kind == "notify.read":
            for subscriber in list(self.by_user.get(message["user"], ())):
                await _guard(subscriber.hand_read(message))
        elif kind == "notify.revoke":
            for subscriber in self.subscribers():
                if subscriber.token_id == message["token"]:
                    await _guard(subscriber.revoke())

    async def _dispatch_entries(self, pushes: list[Push]) -> None:
        """Hand a batch released by the sequencer (increasing ids) to the local
        subscribers: each gets the entries it may see as one list in id order, so its
        cursor never passes one of them before it is handed over."""
        personal: dict[int, list[Push]] = defaultdict(list)
        broadcast = []
        for push in pushes:
            if push.recipient is None:
                broadcast.append(push)
            else:
                personal[push.recipient].append(push)
        if not broadcast:
            handed = 0
            for user_id, own in personal.items():
                for subscriber in list(self.by_user.get(user_id, ())):
                    await _guard(subscriber.hand(own))
                    handed += 1
                    if handed % YIELD_EVERY == 0:
                        await asyncio.sleep(0)
            return
        now = time.time()
        for count, subscriber in enumerate(self.subscribers(), 1):
            if count % YIELD_EVERY == 0:
                # Let the event loop flush sockets and serve requests meanwhile.
                await asyncio.sleep(0)
            own = personal.get(subscriber.user_id)
            if subscriber.pending is not None:
                # Filtered by audience at flush (group_ids may still be loading).
                subscriber.pending.extend(sorted([*own, *broadcast], key=_by_id) if own else broadcast)
                continue
            visible = [p for p in broadcast if p.visible_to(subscriber, now)]
            if own:
                visible = sorted([*own, *visible], key=_by_id)
            if visible:
                await _guard(subscriber.deliver(visible))


def _by_id(push: Push) -> int:
    return push.id


def _lapsed_credentials(since: float, token_ids: set[int], user_ids: set[int]) -> tuple[set, set]:
    """Return ``(revoked token pks, inactive user pks)`` among those given; tokens are
    looked at only if revoked after ``since`` - 60 s (POSIX seconds; slack for clocks)."""
    from datetime import datetime, timezone

    from django.contrib.auth import get_user_model

    from .models import ApiToken

    revoked_after = datetime.fromtimestamp(since - 60, tz=timezone.utc)
    revoked = set()
    if token_ids:
        revoked = set(
            ApiToken.objects.filter(revoked_at__gte=revoked_after).values_list("pk", flat=True)
        ) & token_ids
    inactive = set()
    users = get_user_model().objects
    ordered = sorted(user_ids)
    for start in range(0, len(ordered), 500):
        chunk = ordered[start : start + 500]
        inactive.update(users.filter(pk__in=chunk, is_active=False).values_list("pk", flat=True))
    return revoked, inactive


def _latest_id() -> int:
    from .models import Entry

    return Entry.objects.aggregate(latest=Max("id"))["latest"] or 0


def _entries_in_range(low: int, high: int, limit: int) -> list[Push]:
    """Return the committed entries with low < id <= high as ``Push``es, in id order,
    at most ``limit``."""
    from .models import Entry

    return [Push(entry_payload(e)) for e in Entry.objects.filter(id__gt=low, id__lte=high).order_by("id")[:limit]]


def _entries_with_ids(ids: list[int]) -> list[Push]:
    """Return the committed entries among ``ids`` as ``Push``es, in id order."""
    from .models import Entry

    return [Push(entry_payload(e)) for e in Entry.objects.filter(id__in=ids).order_by("id")]


# Read-only, so any thread of the default executor may run them (thread_sensitive=False).
_alatest_id = database_sync_to_async(_latest_id, thread_sensitive=False)
_read_range = database_sync_to_async(_entries_in_range, thread_sensitive=False)
_read_ids = database_sync_to_async(_entries_with_ids, thread_sensitive=False)


async def _guard(awaitable) -> None:
    """Await a delivery; one broken connection must not stop the fan-out."""
    try:
        await awaitable
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("notify hub: delivery failed", extra=log_fields("hub.delivery_failed"))


async def _quietly(awaitable) -> None:
    try:
        await awaitable
    except Exception:
        pass


def text_frame(payload: bytes) -> bytes:
    """Return ``payload`` (UTF-8 text) as one unfragmented, unmasked server-to-client
    WebSocket text frame: FIN + opcode 1, then a 7-, 16- or 64-bit length
    (RFC 6455 §5.2; servers do not mask, §5.1)."""
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x81, size)
    elif size < 65536:
        head = struct.pack("!BBH", 0x81, 126, size)
    else:
        head = struct.pack("!BBQ", 0x81, 127, size)
    return head + payload


class SocketWriter:
    """Write pre-encoded WebSocket frames of one daphne connection straight to its socket.

    Why: going through daphne (``send`` -> autobahn -> Twisted) costs, per frame and
    connection, a UTF-8 encode, the framing, and a writer registration with the event
    loop (two ``epoll_ctl`` calls); at 10,000 connections that was most of a broadcast's
    CPU. A frame encoded once per process (``Push.ws_wire``) and written with one
    ``send()`` costs a syscall. Order is kept: while Twisted still holds unsent bytes
    for the connection, the frame is queued behind them with ``transport.write``.

    Use ``SocketWriter.for_send(send)``: it returns None (callers use ``send``) unless
    the connection is daphne's plain TCP (no TLS in daphne, no permessage-deflate).
    """

    __slots__ = ("protocol", "transport")

    def __init__(self, protocol, transport):
        self.protocol = protocol
        self.transport = transport

    @classmethod
    def for_send(cls, send) -> "SocketWriter | None":
        protocol = send.args[0] if isinstance(send, functools.partial) and send.args else None
        transport = getattr(protocol, "transport", None)
        if (
            type(transport).__module__ != "twisted.internet.tcp"
            or getattr(transport, "TLS", True) is not False
            or getattr(protocol, "_perMessageCompress", True) is not None
            or not hasattr(protocol, "STATE_OPEN")
        ):
            return None
        return cls(protocol, transport)

    def write(self, frame: bytes) -> bool:
        """Write one complete frame; return False (nothing written) when the
        WebSocket is not open or is mid-message, so the caller falls back to ``send``."""
        protocol, transport = self.protocol, self.transport
        if (
            protocol.state != protocol.STATE_OPEN
            or protocol.send_state != protocol.SEND_STATE_GROUND
            or not transport.connected
            or transport.disconnecting
        ):
            return False
        if transport._tempDataLen or transport.offset < len(transport.dataBuffer):
            transport.write(frame)
            return True
        try:
            sent = transport.socket.send(frame)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            return False
        if sent < len(frame):
            transport.write(frame[sent:])
        return True


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


def all_hubs() -> list[Hub]:
    """Return the hubs of this process (one per event loop that has used one)."""
    return list(_hubs.values())


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
    entry, and clients get it at their next resume (docs/protocol.md §1).
    """
    layer = get_channel_layer(notify_settings.CHANNEL_LAYER_ALIAS)
    if layer is None:
        return
    try:
        await layer.group_send(HUB_GROUP, message)
    except Exception:
        logger.warning("notify: push of %s failed; clients resume from the database", message.get("type"), exc_info=True,
                       extra=log_fields("hub.publish_failed", message_type=message.get("type")))


def publish(message: dict[str, Any]) -> None:
    """Synchronous ``apublish`` for sync code (services, admin, commands)."""
    async_to_sync(apublish)(message)
