"""Escalation: push by Web Push what no device of the user acknowledged in time.

An item (personal or announcement) becomes *due* ``WEBPUSH_AFTER_SECONDS`` after it
was stored. For each due item and each push subscription of a user in its audience,
``Escalator`` sends one push unless, when the subscription's batch is read, the item
is delivered (a device acked an id >= it, notify.receipts), read, muted, of a
``no_push`` kind (notify.preferences), expired, or older than
``WEBPUSH_MAX_AGE_SECONDS``.

Bounded work, nothing written at announce time:

- ``EscalationState.horizon``: every item with id <= horizon has been dealt with. A pass
  takes the items in (horizon, top], where ``top`` is the largest id below the first
  item that is not yet due (at most ``ENTRY_CHUNK`` items), and walks the
  subscriptions that may need them in keyset batches of ``WEBPUSH_BATCH_SIZE``
  (every subscription when the range holds an announcement; the recipients' otherwise).
- ``PushSubscription.pushed_through``: moved to an item's id as soon as the push service
  answered its push, so that a pass interrupted by a kill and run again skips what was
  pushed (a push in flight at the kill may go once more).
- Pushes go out from ``WEBPUSH_WORKERS`` threads at most ``WEBPUSH_RATE`` per second;
  each subscription's items go in id order from one thread. Database writes are made
  by the calling thread only.

An item committed more than ``WEBPUSH_AFTER_SECONDS`` after its id was allocated (a
transaction that long) may be passed over.
"""

import logging
import queue
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import BigIntegerField, Case, F, Max, Min, Q, Value, When
from django.db.models.functions import Greatest
from django.utils import timezone

from .conf import notify_settings
from .models import Entry, EscalationState, PushSubscription, Receipt, StreamState
from .preferences import prefs_for
from .receipts import delivered_by_user
from .serializers import to_wire
from .webpush import Outcome, WebPushConfig, payload_for, send_push

logger = logging.getLogger(__name__)

# Most stream items one pass considers.
ENTRY_CHUNK = 1000
# The calling thread writes answered pushes at least this often (seconds).
WRITE_EVERY_SECONDS = 0.2


@dataclass
class PassResult:
    """What one pass did: ``sent``, ``gone`` (subscriptions deleted), ``failed`` push
    counts, ``horizon`` after it, and ``more`` (due items remain past the horizon)."""

    sent: int = 0
    gone: int = 0
    failed: int = 0
    horizon: int = 0
    more: bool = False


class RateLimiter:
    """Thread-safe pacing: ``wait()`` returns at most ``rate`` times per second."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate if rate and rate > 0 else 0.0
        self.next = time.monotonic()
        self.lock = threading.Lock()

    def wait(self, stop: threading.Event) -> bool:
        """Wait for the next slot; False when ``stop`` was set meanwhile."""
        if not self.interval:
            return not stop.is_set()
        with self.lock:
            now = time.monotonic()
            slot = max(self.next, now)
            self.next = slot + self.interval
        delay = slot - time.monotonic()
        if delay > 0:
            return not stop.wait(delay)
        return not stop.is_set()


def due_range(start: int, now, after_seconds: int) -> int:
    """The largest id ``top`` >= ``start`` such that every item with id in
    (start, top] was stored at least ``after_seconds`` before ``now``."""
    cutoff = now - timedelta(seconds=after_seconds)
    first_not_due = Entry.objects.filter(id__gt=start, created_at__gt=cutoff).aggregate(first=Min("id"))["first"]
    if first_not_due is not None:
        return max(start, first_not_due - 1)
    return max(start, Entry.objects.aggregate(top=Max("id"))["top"] or 0)


class Escalator:
    """Runs escalation passes (see the module docstring).

    Args:
        cfg: the Web Push settings (``notify.webpush.config()``).
        stop: set it to end the current pass early (SIGTERM): no new push starts, the
            answered ones are written, the horizon stays for the next run.
    """

    def __init__(self, cfg: WebPushConfig, stop: threading.Event | None = None):
        self.cfg = cfg
        self.stop = stop or threading.Event()
        self.limiter = RateLimiter(float(notify_settings.WEBPUSH_RATE or 0))
        self.pool = ThreadPoolExecutor(max_workers=max(1, int(notify_settings.WEBPUSH_WORKERS)),
                                       thread_name_prefix="notify-push")

    def close(self) -> None:
        """Wait for pushes in flight (each at most ``WEBPUSH_TIMEOUT_SECONDS``)."""
        self.pool.shutdown(wait=True, cancel_futures=True)

    # --- one pass ------------------------------------------------------------------------

    def run_pass(self) -> PassResult:
        """Deal with the items that are due now, up to ``ENTRY_CHUNK`` of them.

        Returns:
            A ``PassResult``; ``more`` means call again at once.
        """
        now = timezone.now()
        state = self._state()
        start = state.horizon
        top = due_range(start, now, self.cfg.after_seconds)
        result = PassResult(horizon=start)
        if top <= start:
            return result
        # Only announcements and items of users with a subscription can need a push (a
        # subscription made later starts after the newest id).
        entries = list(
            Entry.objects.filter(id__gt=start, id__lte=top)
            .filter(Q(recipient__isnull=True) | Q(recipient__in=PushSubscription.objects.values("user_id")))
            .order_by("id")[:ENTRY_CHUNK]
        )
        if len(entries) == ENTRY_CHUNK and entries[-1].id < top:
            top, result.more = entries[-1].id, True
        oldest = now - timedelta(seconds=int(notify_settings.WEBPUSH_MAX_AGE_SECONDS))
        candidates = [
            e for e in entries
            if not e.muted and e.created_at > oldest and (e.expires_at is None or e.expires_at > now)
        ]
        if candidates:
            self._push_range(candidates, top, result)
        if not self.stop.is_set():
            EscalationState.objects.filter(pk=state.pk).update(horizon=top)
            result.horizon = top
        return result

    def _state(self) -> EscalationState:
        state = EscalationState.objects.filter(pk=1).first()
        if state is None:
            # First run: start where the subscriptions are (nothing older is pushed).
            start = PushSubscription.objects.aggregate(low=Min("pushed_through"))["low"]
            if start is None:
                start = Entry.objects.aggregate(top=Max("id"))["top"] or 0
            state, _ = EscalationState.objects.get_or_create(pk=1, defaults={"horizon": start})
        return state

    def _push_range(self, candidates: list[Entry], top: int, result: PassResult) -> None:
        subscriptions = PushSubscription.objects.filter(pushed_through__lt=top)
        if all(e.recipient_id is not None for e in candidates):
            subscriptions = subscriptions.filter(user_id__in={e.recipient_id for e in candidates})
        payloads: dict[int, bytes] = {}
        after = 0
        batch_size = max(1, int(notify_settings.WEBPUSH_BATCH_SIZE))
        while not self.stop.is_set():
            batch = list(
                subscriptions.filter(id__gt=after).order_by("id")
                .only("id", "user_id", "endpoint", "p256dh", "auth", "pushed_through")[:batch_size]
            )
            if not batch:
                return
            after = batch[-1].id
            plan = self._plan(batch, candidates)
            for items in plan.values():
                for entry in items:
                    if entry.id not in payloads:
                        payloads[entry.id] = payload_for(to_wire(entry, read=False))
            self._send(batch, plan, payloads, result)

    def _plan(self, batch: list[PushSubscription], candidates: list[Entry]) -> dict[int, list[Entry]]:
        """``{subscription pk: items to push, in id order}`` for one batch, from the
        users' state read now (a few queries for the whole batch)."""
        user_ids = {s.user_id for s in batch}
        users = {
            pk: joined
            for pk, joined in get_user_model().objects.filter(pk__in=user_ids, is_active=True)
            .values_list("pk", "date_joined")
        }
        groups: dict[int, set[int]] = defaultdict(set)
        if any(e.audience_group_id is not None for e in candidates):
            through = get_user_model().groups.through
            for user_id, group_id in through.objects.filter(user_id__in=user_ids).values_list("user_id", "group_id"):
                groups[user_id].add(group_id)
        read_through = dict(StreamState.objects.filter(user_id__in=user_ids).values_list("user_id", "read_through"))
        receipts = set(
            Receipt.objects.filter(user_id__in=user_ids, entry_id__in=[e.id for e in candidates])
            .values_list("user_id", "entry_id")
        )
        delivered = delivered_by_user(user_ids)
        prefs = prefs_for(user_ids)
        plan = {}
        for sub in batch:
            user_id = sub.user_id
            if user_id not in users:
                continue
            floor = max(sub.pushed_through, read_through.get(user_id, 0), delivered.get(user_id, 0))
            items = []
            for e in candidates:
                if e.id <= floor or (user_id, e.id) in receipts or not prefs[user_id].may_push(e.kind):
                    continue
                if e.recipient_id is not None:
                    visible = e.recipient_id == user_id
                else:
                    visible = e.created_at > users[user_id] and (
                        e.audience_group_id is None or e.audience_group_id in groups[user_id]
                    )
                if visible:
                    items.append(e)
            if items:
                plan[sub.pk] = items
        return plan

    def _send(self, batch, plan, payloads, result: PassResult) -> None:
        """Push the batch's plan from the pool; write each answer from this thread."""
        answers: queue.Queue = queue.Queue()
        by_pk = {s.pk: s for s in batch}
        futures = [
            self.pool.submit(self._push_items, by_pk[pk], items, payloads, answers)
            for pk, items in plan.items()
        ]
        pending = len(futures)
        while pending:
            answered = []
            deadline = time.monotonic() + WRITE_EVERY_SECONDS
            while pending and time.monotonic() < deadline:
                try:
                    answer = answers.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if answer is None:
                    pending -= 1
                else:
                    answered.append(answer)
            self._write(answered, result)

    def _push_items(self, sub: PushSubscription, items: list[Entry], payloads, answers: queue.Queue) -> None:
        try:
            for entry in items:
                if not self.limiter.wait(self.stop):
                    return
                outcome, _ = send_push(sub.endpoint, sub.p256dh, sub.auth, payloads[entry.id], self.cfg,
                                       topic=f"n{entry.id}")
                answers.put((sub.pk, entry.id, outcome))
                if outcome is Outcome.GONE:
                    return
        except Exception:
            logger.exception("notify: pushes to subscription %s failed", sub.pk)
        finally:
            answers.put(None)

    def _write(self, answered: list[tuple[int, int, Outcome]], result: PassResult) -> None:
        """Record answered pushes: move ``pushed_through`` (sent or failed: not retried),
        delete gone subscriptions."""
        if not answered:
            return
        through: dict[int, int] = {}
        gone = set()
        for pk, entry_id, outcome in answered:
            if outcome is Outcome.GONE:
                gone.add(pk)
                result.gone += 1
            else:
                through[pk] = max(through.get(pk, 0), entry_id)
                if outcome is Outcome.SENT:
                    result.sent += 1
                else:
                    result.failed += 1
        moved = {pk: entry_id for pk, entry_id in through.items() if pk not in gone}
        with transaction.atomic():
            if moved:  # one statement: pushed_through = GREATEST(pushed_through, CASE id ...)
                cases = Case(*(When(pk=pk, then=Value(entry_id)) for pk, entry_id in moved.items()),
                             output_field=BigIntegerField())
                PushSubscription.objects.filter(pk__in=moved).update(pushed_through=Greatest(F("pushed_through"), cases))
            if gone:
                PushSubscription.objects.filter(pk__in=gone).delete()

    # --- the loop ------------------------------------------------------------------------

    def run(self, *, once: bool = False) -> PassResult:
        """Run passes until ``stop`` is set (or, with ``once``, until nothing due is left).

        Returns:
            The totals of every pass.
        """
        total = PassResult()
        while not self.stop.is_set():
            result = self.run_pass()
            total.sent += result.sent
            total.gone += result.gone
            total.failed += result.failed
            total.horizon = result.horizon
            if result.sent or result.gone or result.failed:
                logger.info("notify: escalation pass: %d sent, %d gone, %d failed, horizon %d",
                            result.sent, result.gone, result.failed, result.horizon)
            if result.more:
                continue
            if once:
                break
            self.stop.wait(float(notify_settings.WEBPUSH_POLL_SECONDS))
        return total
