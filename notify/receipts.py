"""Delivery receipts: which items each device of a user has shown.

A client acknowledges the highest id it has shown (WebSocket frame
``{"type": "ack", "id": N}``, or ``POST /notify/api/notifications/ack/``); that means
every item of the user's stream with id <= N was shown on that device. An N that is
not an id of the user's stream (foreign, future, expired) changes nothing.

Receipts are cheap: one ``DeviceReceipt`` row per (user, device), moved forward by one
upsert per batch of acks (``record_acks``), never a row per item. WebSocket acks are
coalesced per process (``AckBuffer``): the highest id per (user, device), written
every ``ACK_FLUSH_SECONDS``; HTTP acks are written at once, rate-limited per user.

An item is *delivered* when any device of its user acknowledged an id >= its id
(``delivered_through``); the escalation job (notify.escalation) pushes only items that
are not.
"""

import asyncio
import logging
import re

from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from .conf import notify_settings
from .models import DeviceReceipt, Entry

logger = logging.getLogger(__name__)

_CLIENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def device_key(client: str | None, *, token_id: int | None = None) -> str:
    """Name the device an ack comes from.

    Args:
        client: the connection's client id (``client`` query parameter or body field:
            1 to 64 of ``A-Z a-z 0-9 _ . : -``); anything else is ignored.
        token_id: the ApiToken pk of a token-authenticated connection.
    Returns:
        ``"c:<client>"``, else ``"t:<token pk>"``, else ``"session"`` (at most 80 chars).
    """
    if isinstance(client, str) and _CLIENT_ID.fullmatch(client):
        return f"c:{client}"
    if token_id is not None:
        return f"t:{token_id}"
    return "session"


def _in_streams(acks: dict[tuple[int, str], set[int]]) -> dict[tuple[int, str], int]:
    """Return, per (user, device), the highest of its acked ids that is an item of that
    user's stream now (CONTRACT §1 rule, as ``EntryQuerySet.stream_for``); keys with
    none are left out. Three queries whatever the count."""
    ids = {pk for pks in acks.values() for pk in pks if 0 < pk < 2**63}
    if not ids:
        return {}
    entries = {
        row[0]: row
        for row in Entry.objects.filter(id__in=ids).values_list(
            "id", "recipient_id", "created_at", "audience_group_id", "expires_at"
        )
    }
    user_ids = {user_id for user_id, _ in acks}
    User = get_user_model()
    joined = dict(User.objects.filter(pk__in=user_ids).values_list("pk", "date_joined"))
    groups: dict[int, set[int]] = {}
    if any(row[3] is not None for row in entries.values()):
        for user_id, group_id in User.groups.through.objects.filter(user_id__in=user_ids).values_list(
            "user_id", "group_id"
        ):
            groups.setdefault(user_id, set()).add(group_id)
    now = timezone.now()
    kept = {}
    for (user_id, device), pks in acks.items():
        for pk in sorted(pks, reverse=True):
            row = entries.get(pk)
            if row is None or user_id not in joined:
                continue
            _, recipient, created, group, expires = row
            if recipient is not None:
                visible = recipient == user_id
            else:
                visible = (
                    created > joined[user_id]
                    and (group is None or group in groups.get(user_id, ()))
                    and (expires is None or expires > now)
                )
            if visible:
                kept[(user_id, device)] = pk
                break
    return kept


def record_acks(acks: dict[tuple[int, str], int | set[int]]) -> int:
    """Record a batch of acks: ``{(user pk, device): acknowledged id or set of ids}``.

    Ids outside the user's stream are dropped; the highest remaining id of each device
    moves its ``delivered_through`` forward (never back), all in one upsert.

    Returns:
        How many (user, device) rows were written.
    """
    kept = _in_streams({key: {pks} if isinstance(pks, int) else set(pks) for key, pks in acks.items()})
    if not kept:
        return 0
    table = DeviceReceipt._meta.db_table
    greatest = "GREATEST" if connection.vendor == "postgresql" else "MAX"
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    rows = sorted(kept.items())  # one lock order for concurrent batches
    values = ", ".join(["(%s, %s, %s, %s)"] * len(rows))
    params = [value for (user_id, device), pk in rows for value in (user_id, device, pk, now)]
    sql = (
        f"INSERT INTO {table} (user_id, device, delivered_through, updated_at) VALUES {values}"
        f" ON CONFLICT (user_id, device) DO UPDATE SET delivered_through ="
        f" {greatest}({table}.delivered_through, excluded.delivered_through), updated_at = excluded.updated_at"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
    return len(rows)


def delivered_through(user_id: int) -> int:
    """The highest id any device of the user acknowledged (0 when none)."""
    return DeviceReceipt.objects.filter(user_id=user_id).aggregate(top=Max("delivered_through"))["top"] or 0


def delivered_by_user(user_ids) -> dict[int, int]:
    """``{user pk: delivered_through}`` for those of ``user_ids`` with any receipt."""
    return dict(
        DeviceReceipt.objects.filter(user_id__in=list(user_ids))
        .values("user_id").annotate(top=Max("delivered_through")).values_list("user_id", "top")
    )


class AckBuffer:
    """Coalesce WebSocket acks of one process and write them in batches.

    ``add`` keeps the ``KEEP`` highest ids per (user, device) (an id outside the user's
    stream must not hide a valid lower one); a task on the event loop writes the batch
    every ``ACK_FLUSH_SECONDS`` (so an ack counts within a second), one upsert per batch.
    """

    KEEP = 8

    def __init__(self):
        self.pending: dict[tuple[int, str], set[int]] = {}
        self.task: asyncio.Task | None = None

    def add(self, user_id: int, device: str, pk: int) -> None:
        """Queue an ack of ``pk`` (int) by ``device`` of user ``user_id``."""
        ids = self.pending.setdefault((user_id, device), set())
        ids.add(pk)
        if len(ids) > self.KEEP:
            ids.discard(min(ids))
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(notify_settings.ACK_FLUSH_SECONDS)
        await self.flush()

    async def flush(self) -> None:
        """Write what is queued now."""
        batch, self.pending = self.pending, {}
        if not batch:
            return
        try:
            await database_sync_to_async(record_acks, thread_sensitive=False)(batch)
        except Exception:
            logger.exception("notify: %d delivery receipts were not recorded", len(batch))


_buffers: dict[asyncio.AbstractEventLoop, AckBuffer] = {}


def get_ack_buffer() -> AckBuffer:
    """The ``AckBuffer`` of the running event loop."""
    loop = asyncio.get_running_loop()
    buffer = _buffers.get(loop)
    if buffer is None:
        for old in [other for other in _buffers if other.is_closed()]:
            del _buffers[old]
        buffer = _buffers[loop] = AckBuffer()
    return buffer
