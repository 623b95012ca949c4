"""Process-level fan-out: one channel-layer subscription per server process.

Every server process runs one ``Hub`` per event loop. The hub owns one channel
(``notify.hub.<random>``) in the group ``HUB_GROUP`` (``notify.realtime.broker``) and a
local registry of the open connections (``Connection``, held by WebSocket consumers,
SSE streams and held long-polls) by user id. Every process receives each published
message once, whatever the number of connections; the hub then hands each entry to
the local connections that may see it. Frames are encoded once per process
(``notify.realtime.frames.Push``).

The channel layer is lossy by design (capacity, expiry, Redis outages) and the
in-memory layer reaches no other process. The database is the truth: the hub also
tails it (``db_tail_seconds``), reads gaps from it, and catches up from it when its
subscription comes back after an outage, all through one ordering rule
(``notify.realtime.sequencer``).
"""

import asyncio
import logging
import time
import weakref
from collections import defaultdict
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db.models import Max

from ..conf import notify_settings
from .broker import HUB_GROUP, entry_payload
from .frames import Push
from .sequencer import Sequencer

logger = logging.getLogger(__name__)

# How long a new connection waits for the hub's layer subscription before it goes on
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


class Connection:
    """One open connection as the hub sees it. A transport holds one (``link``) and is
    its ``sink``; the hub registers connections, not transports.

    Args:
        sink: the transport; it implements ``deliver(pushes)`` (send entries, calling
            ``take_new`` first), ``deliver_read(event)``, ``heartbeat()`` and
            ``revoke()``.
        user: the authenticated user.
        token_id: the ApiToken pk of a token-authenticated connection, else None.

    ``group_ids`` (frozenset of Group pks) is set once the transport has read it;
    ``cursor`` is the last id delivered; ``last_sent`` (monotonic seconds) the time of
    the last frame. While ``pending`` is a list (from the start until the transport
    has sent its first frame and backlog), whatever the hub hands over waits: pushes in
    ``pending``, ``read`` changes in ``pending_reads``; ``flush_pending`` then delivers
    them in that order, so nothing overtakes ``hello`` (docs/protocol.md §3) or the SSE
    response headers.
    """

    __slots__ = ("sink", "user_id", "joined", "token_id", "group_ids", "cursor", "pending",
                 "pending_reads", "last_sent")

    def __init__(self, sink, user, token_id: int | None = None):
        self.sink = sink
        self.user_id: int = user.pk
        self.joined: float = user.date_joined.timestamp()
        self.token_id = token_id
        self.group_ids: frozenset = frozenset()
        self.cursor = 0
        self.pending: list[Push] | None = []
        self.pending_reads: list[dict[str, Any]] = []
        self.last_sent = time.monotonic()

    def sent(self) -> None:
        """Note that a frame went out now (heartbeats count silence from here)."""
        self.last_sent = time.monotonic()

    def take_new(self, pushes: list[Push]) -> list[Push]:
        """Return the pushes after the cursor, in id order, and advance the cursor.

        Only safe because the hub hands pushes over in id order with no unresolved gap
        (``notify.realtime.sequencer``): the cursor may then pass every id it skips.
        """
        fresh = sorted((p for p in pushes if p.id > self.cursor), key=_by_id)
        if fresh:
            self.cursor = fresh[-1].id
        return fresh

    async def hand(self, pushes: list[Push]) -> None:
        """Deliver ``pushes`` (in id order, visible to this user), or keep them for
        ``flush_pending`` while the first frames are not out."""
        if self.pending is not None:
            self.pending.extend(pushes)
        else:
            await self.sink.deliver(pushes)

    async def hand_read(self, event: dict[str, Any]) -> None:
        """Deliver a ``read`` change, or keep it for ``flush_pending``."""
        if self.pending is not None:
            self.pending_reads.append(event)
        else:
            await self.sink.deliver_read(event)

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
            await self.sink.deliver(pending)
        for event in reads:
            await self.sink.deliver_read(event)


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
    ``notify.realtime.sequencer``); the hub then hands each released batch to the local
    connections that may see it, each getting its own entries in id order.
    """

    def __init__(self):
        self.by_user: dict[int, set[Connection]] = defaultdict(set)
        self.count = 0
        self._task: asyncio.Task | None = None
        self._ready: asyncio.Event | None = None
        self._channel: str | None = None
        self.sequencer = Sequencer(self._dispatch_entries, _read_range, _read_ids)
        self.catch_ups = 0  # times the hub read what it missed after a layer outage

    async def subscribe(self, link: Connection) -> None:
        """Register ``link`` and wait (at most ``SUBSCRIBE_WAIT_SECONDS``) until
        the hub has its watermark and receives pushes, so a backlog read after this
        returns misses nothing.

        Does not raise when the channel layer is down: the hub then works from the
        database tail until its subscription comes back.
        """
        self.by_user[link.user_id].add(link)
        self.count += 1
        if self._task is None or self._task.done():
            self._ready = asyncio.Event()
            self._task = asyncio.ensure_future(self._run())
        if not self._ready.is_set():
            try:
                await asyncio.wait_for(self._ready.wait(), SUBSCRIBE_WAIT_SECONDS)
            except asyncio.TimeoutError:
                logger.warning("notify hub: channel layer unavailable, serving from the database")

    def unsubscribe(self, link: Connection) -> None:
        """Remove ``link``; does nothing if it is not registered. The listener
        stops with the last connection."""
        links = self.by_user.get(link.user_id)
        if not links or link not in links:
            return
        links.discard(link)
        self.count -= 1
        if not links:
            del self.by_user[link.user_id]
        if self.count == 0 and self._task is not None:
            self._task.cancel()
            self._task = None
            # Nobody listens until the next start, which reads the newest id again.
            self.sequencer.reset()

    def links(self):
        """Yield every local connection (a snapshot, safe against changes)."""
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
                    logger.warning("notify hub: could not read the newest id", exc_info=True)
                    self._ready.set()
                    await asyncio.sleep(1.0)
            maintenance = asyncio.ensure_future(self._maintain(layer))
            if layer is None:
                logger.error("notify hub: no channel layer configured; live pushes come from the database tail")
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
                    logger.warning("notify hub: channel layer back, catching up from the database")
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
                logger.warning("notify hub: channel layer failed", exc_info=True)
                # Connections waiting for the layer go on from the database.
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
                for link in self.links():
                    if link.pending is None and now - link.last_sent >= period:
                        await _guard(link.sink.heartbeat())
                if now - refreshed > GROUP_REFRESH_SECONDS and self._channel:
                    refreshed = now
                    await _quietly(layer.group_add(HUB_GROUP, self._channel))
                if now - checked > CREDENTIALS_CHECK_SECONDS:
                    checked, since, wall = now, wall, time.time()
                    try:
                        await self._check_credentials(since)
                    except Exception:
                        logger.warning("notify hub: credentials check failed", exc_info=True)
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
                logger.warning("notify hub: database tail failed", exc_info=True)

    async def _check_credentials(self, since: float) -> None:
        """Close connections whose token was revoked since ``since`` (POSIX seconds) or
        whose user was deactivated.

        ``notify_token --revoke`` also publishes ``notify.revoke``; this check is what
        closes them when no shared channel layer carried that message (the in-memory
        layer in another process) or it was lost.
        """
        links = list(self.links())
        token_ids = {link.token_id for link in links if link.token_id is not None}
        user_ids = {link.user_id for link in links}
        revoked, inactive = await database_sync_to_async(_lapsed_credentials)(since, token_ids, user_ids)
        for link in links:
            if link.token_id in revoked or link.user_id in inactive:
                await _guard(link.sink.revoke())

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Hand one channel-layer message to the local connections it concerns.

        Message types: ``notify.entries`` (``entries``: list of ``entry_payload``),
        ``notify.read`` (``user``, plus the ``read`` frame fields), ``notify.revoke``
        (``token``: ApiToken pk). Unknown types are ignored.
        """
        kind = message.get("type")
        if kind == "notify.entries":
            await self.sequencer.add(Push(data) for data in message["entries"])
        elif kind == "notify.read":
            for link in list(self.by_user.get(message["user"], ())):
                await _guard(link.hand_read(message))
        elif kind == "notify.revoke":
            for link in self.links():
                if link.token_id == message["token"]:
                    await _guard(link.sink.revoke())

    async def _dispatch_entries(self, pushes: list[Push]) -> None:
        """Hand a batch released by the sequencer (increasing ids) to the local
        connections: each gets the entries it may see as one list in id order, so its
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
                for link in list(self.by_user.get(user_id, ())):
                    await _guard(link.hand(own))
                    handed += 1
                    if handed % YIELD_EVERY == 0:
                        await asyncio.sleep(0)
            return
        now = time.time()
        for count, link in enumerate(self.links(), 1):
            if count % YIELD_EVERY == 0:
                # Let the event loop flush sockets and serve requests meanwhile.
                await asyncio.sleep(0)
            own = personal.get(link.user_id)
            if link.pending is not None:
                # Filtered by audience at flush (group_ids may still be loading).
                link.pending.extend(sorted([*own, *broadcast], key=_by_id) if own else broadcast)
                continue
            visible = [p for p in broadcast if p.visible_to(link, now)]
            if own:
                visible = sorted([*own, *visible], key=_by_id)
            if visible:
                await _guard(link.sink.deliver(visible))


def _by_id(push: Push) -> int:
    return push.id


def _lapsed_credentials(since: float, token_ids: set[int], user_ids: set[int]) -> tuple[set, set]:
    """Return ``(revoked token pks, inactive user pks)`` among those given; tokens are
    looked at only if revoked after ``since`` - 60 s (POSIX seconds; slack for clocks)."""
    from datetime import datetime, timezone

    from django.contrib.auth import get_user_model

    from ..models import ApiToken

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
    from ..models import Entry

    return Entry.objects.aggregate(latest=Max("id"))["latest"] or 0


def _entries_in_range(low: int, high: int, limit: int) -> list[Push]:
    """Return the committed entries with low < id <= high as ``Push``es, in id order,
    at most ``limit``."""
    from ..models import Entry

    return [Push(entry_payload(e)) for e in Entry.objects.filter(id__gt=low, id__lte=high).order_by("id")[:limit]]


def _entries_with_ids(ids: list[int]) -> list[Push]:
    """Return the committed entries among ``ids`` as ``Push``es, in id order."""
    from ..models import Entry

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
        logger.exception("notify hub: delivery failed")


async def _quietly(awaitable) -> None:
    try:
        await awaitable
    except Exception:
        pass


_hubs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub]" = weakref.WeakKeyDictionary()


def get_hub() -> Hub:
    """Return the hub of the running event loop, creating it on first use."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = Hub()
    return hub


