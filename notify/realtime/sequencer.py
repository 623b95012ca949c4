"""The ordering rule of the real-time layer, stated once.

**Invariant.** A connection's cursor may pass an id only when that id was handed to it
or is known not to be in its stream. The hub upholds it by handing entries over in id
order, one position of the global id sequence at a time: the ``Sequencer`` releases an
entry only when every smaller id has been released before it or *resolved* (read from
the database and found absent). Everything that brings entries in goes through it:
pushes from the channel layer, the database tail, gap fills and the catch-up after a
channel-layer outage; every transport then only filters ``id > cursor``
(``notify.realtime.hub.Connection.take_new``), which is safe exactly because of this order.

**Why an absent id may still arrive.** An id found absent belongs to a rolled-back
transaction or to one still open. The stream locks (see ``notify.models.Entry``) make
ids visible in increasing order *within one user's stream*: when an entry M of some
stream has committed, every smaller id of that stream has committed or never will. So
before the sequencer releases anything it re-reads the ids it recorded as absent
(``ABSENT_RECHECK_SECONDS``): one that has committed since is released first, in
order, and can never be overtaken in its own stream by a later entry. This covers a
push that is lost, one that is overtaken, and writers in other processes whose pushes
never reach this one (the in-memory layer).

The sequencer knows nothing of connections or of the database: it is given three
callables, so it is unit-tested alone (``tests/test_sequencer.py``).
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

logger = logging.getLogger(__name__)

# How long an entry waits for a missing smaller id before the sequencer reads the
# gap from the database (seconds).
GAP_GRACE_SECONDS = 0.15
# The most entries one database read returns; a longer gap is read in several steps.
FILL_LIMIT = 5000
# How long an id found absent is re-read before each release (seconds): a send
# transaction that stays open longer than this, and whose push is lost as well, is
# delivered at the client's next resume instead of live.
ABSENT_RECHECK_SECONDS = 30.0
# The most absent ids remembered at once (the oldest are forgotten first).
ABSENT_LIMIT = 10_000


class Sequenced(Protocol):
    """What the sequencer needs of an entry: its stream id."""

    id: int


# ``read_range(low, high, limit)``: committed entries with low < id <= high, in id
# order, at most ``limit``. ``read_ids(ids)``: the committed entries among ``ids``.
RangeReader = Callable[[int, int, int], Awaitable[list[Any]]]
IdsReader = Callable[[list[int]], Awaitable[list[Any]]]
Dispatcher = Callable[[list[Any]], Awaitable[None]]


class Sequencer:
    """Release entries in id order with no gap that is not resolved (see module doc).

    Args:
        dispatch: awaited with each released batch, a non-empty list in increasing id
            order; it is never called concurrently with itself.
        read_range: see ``RangeReader``; may raise (logged; the gap is retried).
        read_ids: see ``IdsReader``; may raise (logged; the ids stay absent).
        grace: ``GAP_GRACE_SECONDS``.
        limit: ``FILL_LIMIT``.
        recheck: ``ABSENT_RECHECK_SECONDS``.
        clock: monotonic seconds, for tests.

    ``high`` is the watermark: every id up to it is released or resolved; None until
    ``start``. All methods serialise on one lock, so a push, the tail and a gap fill
    never interleave.
    """

    def __init__(self, dispatch: Dispatcher, read_range: RangeReader, read_ids: IdsReader, *,
                 grace: float = GAP_GRACE_SECONDS, limit: int = FILL_LIMIT,
                 recheck: float = ABSENT_RECHECK_SECONDS, clock: Callable[[], float] = time.monotonic):
        self._dispatch = dispatch
        self._read_range = read_range
        self._read_ids = read_ids
        self.grace = grace
        self.limit = limit
        self.recheck = recheck
        self.clock = clock
        self.high: int | None = None
        self.held: dict[int, Any] = {}  # entries above a gap, by id
        self.absent: dict[int, float] = {}  # id -> clock() deadline for re-reading it
        self.gap_fills = 0  # database reads of a gap (for metrics)
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None

    def reset(self) -> None:
        """Forget everything (nobody listens any more); ``start`` begins again."""
        self.high = None
        self.held.clear()
        self.absent.clear()
        self._cancel_timer()

    async def start(self, latest: int) -> None:
        """Set the watermark to ``latest`` (the newest committed id) if not yet set.

        Entries up to ``latest`` are the connections' own backlog reads, not the
        sequencer's to release.
        """
        async with self._lock:
            if self.high is None:
                self.high = latest
            self.held = {pk: e for pk, e in self.held.items() if pk > self.high}
            await self._drain()

    async def add(self, entries: Iterable[Any]) -> None:
        """Take entries pushed through the channel layer, in any order.

        An entry at or below the watermark is released at once: it was found absent
        earlier and has committed since (or it is a repeat, which connections drop by
        their cursor).
        """
        entries = list(entries)
        if not entries:
            return
        async with self._lock:
            if self.high is None:  # pushes arrived before the start-up read
                self.high = min(e.id for e in entries) - 1
            late = sorted((e for e in entries if e.id <= self.high), key=lambda e: e.id)
            for entry in late:
                self.absent.pop(entry.id, None)
            if late:
                await self._release(late)
            for entry in entries:
                if entry.id > self.high:
                    self.held.setdefault(entry.id, entry)
            await self._drain()

    async def tail(self, latest: int) -> None:
        """The database says committed ids reach ``latest``: read and release what this
        process was not pushed (the database tail, and the catch-up after an outage),
        and re-read the ids still recorded as absent."""
        async with self._lock:
            if self.high is None:
                return
            while latest > self.high:
                if not await self._fill(latest):
                    return
            await self._release([])
            await self._drain()

    # Under the lock

    async def _drain(self) -> None:
        ready = []
        while self.high + 1 in self.held:
            self.high += 1
            ready.append(self.held.pop(self.high))
        if ready:
            await self._release(ready)
        if self.held and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.grace, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        asyncio.ensure_future(self._fill_gap())

    async def _fill_gap(self) -> None:
        async with self._lock:
            if not self.held or self.high is None:
                return
            if await self._fill(min(self.held) - 1):
                await self._drain()
            elif self._timer is None:  # the read failed: try again later
                self._timer = asyncio.get_running_loop().call_later(self.grace, self._on_timer)

    async def _fill(self, upto: int) -> bool:
        """Read the committed entries in (high, upto], release them with the held ones
        in order, and record the ids not found as absent. Returns False if the read
        failed (nothing changed)."""
        low = self.high
        try:
            found = await self._read_range(low, upto, self.limit)
        except Exception:
            logger.warning("notify sequencer: could not read ids %s..%s", low + 1, upto, exc_info=True)
            return False
        self.gap_fills += 1
        # A capped read resolves only up to its last row.
        resolved = found[-1].id if len(found) >= self.limit else upto
        for entry in found:
            self.held.setdefault(entry.id, entry)
        deadline = self.clock() + self.recheck
        ready = []
        for pk in range(low + 1, resolved + 1):
            entry = self.held.pop(pk, None)
            if entry is None:
                self.absent[pk] = deadline
            else:
                ready.append(entry)
        if len(self.absent) > ABSENT_LIMIT:
            for pk in sorted(self.absent)[: len(self.absent) - ABSENT_LIMIT]:
                del self.absent[pk]
        self.high = resolved
        if ready:
            await self._release(ready)
        return True

    async def _release(self, entries: list[Any]) -> None:
        """The one place entries leave the sequencer: first any absent id that has
        committed since, then ``entries``, as one batch in id order."""
        if self.absent:
            now = self.clock()
            for pk in [pk for pk, deadline in self.absent.items() if deadline < now]:
                del self.absent[pk]
        if self.absent:
            try:
                arrived = await self._read_ids(sorted(self.absent))
            except Exception:
                logger.warning("notify sequencer: could not re-read absent ids", exc_info=True)
                arrived = []
            for entry in arrived:
                self.absent.pop(entry.id, None)
            if arrived:
                known = {e.id for e in entries}
                entries = sorted([*entries, *(e for e in arrived if e.id not in known)], key=lambda e: e.id)
        if entries:
            await self._dispatch(entries)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
