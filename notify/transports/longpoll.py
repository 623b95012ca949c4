"""Long-poll: ``GET <prefix>poll/`` (docs/protocol.md §4).

A held poll is answered by ``deliver`` (a push from any process, through the hub) or by
its ``timeout`` (``loop.call_later``).
"""

import asyncio
from typing import Any

from ..conf import notify_settings
from ..exceptions import InvalidParameter
from ..params import parse_int, query_params
from ..realtime.frames import Push
from ..selectors import aread_stream
from .http import JSON_HEADERS, StreamConsumer


class PollConsumer(StreamConsumer):
    """``GET /notify/poll/?since=<id>&timeout=<seconds>&limit=<n>`` (docs/protocol.md §4).

    Answers ``200 {"cursor", "unread", "notifications"}`` with ``Cache-Control:
    no-store``: at once when items follow ``since`` (the oldest ``limit``), or without
    ``since`` (the current cursor, no items), or with ``timeout=0``; otherwise when a
    push arrives (``unread`` = the count read at the start plus the new items) or after
    ``timeout`` seconds (the old ``since`` as cursor, no items). ``timeout`` 0 to
    ``POLL_MAX_TIMEOUT`` (default ``POLL_TIMEOUT``), ``limit`` 1 to ``POLL_MAX_LIMIT``
    (default ``POLL_LIMIT``); anything else is ``400 invalid_parameter``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.limit = notify_settings.POLL_LIMIT
        self.unread = 0
        self.timer: asyncio.TimerHandle | None = None

    async def handle(self, body):
        if not await self.check_request():
            return
        try:
            params = query_params(self.scope)
            since = parse_int("since", params.get("since"), default=None)
            timeout = parse_int("timeout", params.get("timeout"), default=notify_settings.POLL_TIMEOUT,
                                maximum=notify_settings.POLL_MAX_TIMEOUT)
            self.limit = parse_int("limit", params.get("limit"), default=notify_settings.POLL_LIMIT,
                                   minimum=1, maximum=notify_settings.POLL_MAX_LIMIT)
        except InvalidParameter as exc:
            return await self.send_error(400, exc.code, str(exc))
        if since is None:
            stream = await aread_stream(self.user, cursor=None, limit=0)
            return await self.answer(stream.latest, stream.unread, [])
        # Waiting is likely: register first, so nothing sent during the read is missed.
        if timeout:
            await self.subscribe()
        stream = await aread_stream(self.user, cursor=since, limit=self.limit, groups=True)
        self.unread = stream.unread
        if stream.items or not timeout:
            cursor = stream.items[-1]["id"] if stream.items else since
            return await self.answer(cursor, stream.unread, stream.items)
        self.link.group_ids = stream.group_ids
        self.link.cursor = since
        self.timer = asyncio.get_running_loop().call_later(timeout, self._expire)
        await self.link.flush_pending()

    async def answer(self, cursor: int, unread: int, items: list[dict[str, Any]]) -> None:
        await self.send_json(200, {"cursor": cursor, "unread": unread, "notifications": items})

    def _expire(self) -> None:
        self.timer = None
        asyncio.ensure_future(self.answer(self.link.cursor, self.unread, []))

    def cleanup(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    # The link's sink: called by the hub

    async def deliver(self, pushes: list[Push]) -> None:
        if self.finished:
            return
        fresh = self.link.take_new(pushes)[: self.limit]
        if fresh:
            # Thousands of polls may be released by one push: splice the objects'
            # JSON, encoded once per process, instead of encoding per poll.
            items = ",".join(push.json for push in fresh)
            body = f'{{"cursor":{fresh[-1].id},"unread":{self.unread + len(fresh)},"notifications":[{items}]}}'
            await self.finish(200, body.encode(), JSON_HEADERS)

    async def deliver_read(self, event) -> None:
        self.unread = event["unread"]

    async def revoke(self) -> None:
        await self.send_error(401, "not_authenticated", "The token was revoked or the user deactivated.")
