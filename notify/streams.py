"""Long-poll (``/notify/poll/``) and Server-Sent Events (``/notify/stream/``): docs/protocol.md §4, §4b.

Both are Channels ``AsyncHttpConsumer`` subclasses routed ahead of Django (see
``notify/asgi.py``) and registered with the process hub as ``Subscriber`` objects. A
waiting request is a coroutine and an entry in the hub's registry: it holds no thread
(Django's ASGI handler would pin one per request) and no database connection (reads go
through ``database_sync_to_async``, which hands the connection back when they end).

``handle()`` never blocks: it sends the answer, or the headers and first events, and
returns, so the consumer is free to receive ``http.disconnect``. A held poll is answered
later by ``deliver`` (a push from any process, through the channel layer) or by its
``timeout`` (``loop.call_later``).
"""

import asyncio
import logging
import time
from typing import Any

from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer

from . import metrics
from .conf import notify_settings
from .consumers import DirectDispatch
from .exceptions import InvalidParameter
from .hub import Push, Subscriber, buffered_bytes, get_hub
from .logging import log_fields
from .params import parse_int, query_params
from .selectors import StreamRead, aread_stream
from .serializers import dumps

logger = logging.getLogger(__name__)

JSON_HEADERS = [
    (b"content-type", b"application/json"),
    (b"cache-control", b"no-store"),
]
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    # nginx and similar proxies buffer responses unless told not to.
    (b"x-accel-buffering", b"no"),
]


def error_body(code: str, message: str) -> bytes:
    """Return the JSON error body of docs/protocol.md §2 as bytes."""
    return dumps({"error": {"code": code, "message": message}}).encode()


def sse_event(event: str, data: dict[str, Any], *, event_id: int | None = None,
              retry_ms: int | None = None) -> str:
    """Return one SSE event (HTML Living Standard, "server-sent events"): optional
    ``retry:`` and ``id:`` fields, ``event:``, one ``data:`` line of compact JSON, and
    the blank line that ends it."""
    head = f"retry: {retry_ms}\n" if retry_ms is not None else ""
    if event_id is not None:
        head += f"id: {event_id}\n"
    return f"{head}event: {event}\ndata: {dumps(data)}\n\n"


class _StreamConsumer(DirectDispatch, Subscriber, AsyncHttpConsumer):
    """What long-poll and SSE share: auth checks, JSON errors, hub registration, and a
    request that outlives ``handle()``.

    ``AsyncHttpConsumer.http_request`` ends the consumer when ``handle()`` returns; here
    it only ends when ``finish()`` ran (the response is complete) or the client went
    away (``http.disconnect``).
    """

    # No channel of its own: the process hub receives one message per push.
    channel_layer_alias = None

    def __init__(self, *args, **kwargs):
        AsyncHttpConsumer.__init__(self, *args, **kwargs)
        Subscriber.__init__(self)
        self.user = None
        self.subscribed = False
        self.finished = False
        self._wake = None  # ends the consumer once the response is complete
        self.headers_sent = False  # SSE: the 200 and its headers are out

    async def __call__(self, scope, receive, send):
        queue = getattr(receive, "__self__", None)
        if isinstance(queue, asyncio.Queue) and getattr(receive, "__name__", "") == "get":
            # daphne (and Channels' test communicators) hand us ``Queue.get``: wake the
            # dispatch loop by queueing ``notify.done`` behind what is already there.
            self._wake = lambda: queue.put_nowait({"type": "notify.done"})
            return await super().__call__(scope, receive, send)

        done = asyncio.Event()
        self._wake = done.set

        async def receive_until_done():
            # Another server: wait for its next message or for the response to be
            # complete, whichever comes first.
            if done.is_set():
                return {"type": "notify.done"}
            incoming = asyncio.ensure_future(receive())
            finished = asyncio.ensure_future(done.wait())
            try:
                await asyncio.wait({incoming, finished}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                finished.cancel()
            if incoming.done():
                return incoming.result()
            incoming.cancel()
            return {"type": "notify.done"}

        await super().__call__(scope, receive_until_done, send)

    async def http_request(self, message):
        if "body" in message:
            self.body.append(message["body"])
        if message.get("more_body"):
            return
        try:
            await self.handle(b"".join(self.body))
        except Exception:
            await self._teardown()
            raise
        if self.finished:
            await self._teardown()
            raise StopConsumer()

    async def http_disconnect(self, message):
        await self._teardown()
        raise StopConsumer()

    async def notify_done(self, message):
        await self._teardown()
        raise StopConsumer()

    async def _teardown(self) -> None:
        if self.subscribed:
            get_hub().unsubscribe(self)
            self.subscribed = False
        self.cleanup()

    def cleanup(self) -> None:
        """Release what the transport holds besides the hub registration (timers)."""

    # Answers

    async def send_json(self, status: int, value: dict[str, Any], headers=()) -> None:
        """Send a complete JSON response and finish."""
        await self.finish(status, dumps(value).encode(), [*JSON_HEADERS, *headers])

    async def send_error(self, status: int, code: str, message: str, headers=()) -> None:
        """Send a docs/protocol.md §2 error response and finish."""
        await self.finish(status, error_body(code, message), [*JSON_HEADERS, *headers])

    async def finish(self, status: int, body: bytes, headers) -> None:
        """Send a complete response (once) and let the consumer end."""
        if self.finished:
            return
        self.finished = True
        if self.subscribed:
            get_hub().unsubscribe(self)
            self.subscribed = False
        self.cleanup()
        self.last_sent = time.monotonic()
        await self.send_response(status, body, headers=headers)
        if self._wake is not None:
            self._wake()

    async def check_request(self) -> bool:
        """Answer 405/401/403 when the request may not use the stream; return whether
        it may. Sets ``user``, ``user_id``, ``joined`` and ``token_id``."""
        if self.scope["method"] != "GET":
            await self.send_error(405, "method_not_allowed", f"Method {self.scope['method']} is not allowed; use GET.",
                                  [(b"allow", b"GET")])
            return False
        user = self.scope.get("user")
        token = self.scope.get("notify_token")
        if token is not None and token.is_service:
            await self.send_error(403, "forbidden", "A service key may only use send/ and announce/.")
            return False
        if user is None or not user.is_authenticated:
            await self.send_error(401, "not_authenticated", "Sign in, or send Authorization: Bearer <token>.",
                                  [(b"www-authenticate", b'Bearer realm="notify"')])
            return False
        self.user = user
        self.user_id = user.pk
        self.joined = user.date_joined.timestamp()
        self.token_id = token.pk if token is not None else None
        return True

    async def subscribe(self) -> None:
        """Register with the hub before the backlog is read (pushes meanwhile wait in
        ``pending``)."""
        await get_hub().subscribe(self)
        self.subscribed = True


class PollConsumer(_StreamConsumer):
    """``GET /notify/poll/?since=<id>&timeout=<seconds>&limit=<n>`` (docs/protocol.md §4).

    Answers ``200 {"cursor", "unread", "notifications"}`` with ``Cache-Control:
    no-store``: at once when items follow ``since`` (the oldest ``limit``), or without
    ``since`` (the current cursor, no items), or with ``timeout=0``; otherwise when a
    push arrives (``unread`` = the count read at the start plus the new items) or after
    ``timeout`` seconds (the old ``since`` as cursor, no items). ``timeout`` 0 to
    ``POLL_MAX_TIMEOUT`` (default ``POLL_TIMEOUT``), ``limit`` 1 to ``POLL_MAX_LIMIT``
    (default ``POLL_LIMIT``); anything else is ``400 invalid_parameter``.
    """

    transport = "longpoll"

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
        self.group_ids = stream.group_ids
        self.cursor = since
        self.timer = asyncio.get_running_loop().call_later(timeout, self._expire)
        await self.flush_pending()

    async def answer(self, cursor: int, unread: int, items: list[dict[str, Any]]) -> None:
        await self.send_json(200, {"cursor": cursor, "unread": unread, "notifications": items})

    def _expire(self) -> None:
        self.timer = None
        asyncio.ensure_future(self.answer(self.cursor, self.unread, []))

    def cleanup(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    # Subscriber: called by the hub

    async def deliver(self, pushes: list[Push]) -> None:
        if self.finished:
            return
        fresh = self.take_new(pushes)[: self.limit]
        if fresh:
            # Thousands of polls may be released by one push: splice the objects'
            # JSON, encoded once per process, instead of encoding per poll.
            items = ",".join(push.json for push in fresh)
            body = f'{{"cursor":{fresh[-1].id},"unread":{self.unread + len(fresh)},"notifications":[{items}]}}'
            await self.finish(200, body.encode(), JSON_HEADERS)
            metrics.delivered(self.transport, fresh, responses=1)

    async def deliver_read(self, event) -> None:
        self.unread = event["unread"]

    async def revoke(self) -> None:
        await self.send_error(401, "not_authenticated", "The token was revoked or the user deactivated.")

    async def drain(self, delay_ms: int) -> None:
        if not self.finished:
            await self.send_json(200, {"cursor": self.cursor, "unread": self.unread, "notifications": [],
                                       "reconnect_ms": delay_ms})


class EventStreamConsumer(_StreamConsumer):
    """``GET /notify/stream/?since=<id>`` as ``text/event-stream`` (docs/protocol.md §4b).

    Resumes from the ``Last-Event-ID`` header (it wins over ``since``); neither means
    live from now; a bad value is ``400 invalid_parameter`` before the stream starts.
    Events: ``hello`` first (``cursor``, ``unread``, ``heartbeat`` seconds; with
    ``retry:`` in milliseconds and ``id:`` set to the position the stream starts from,
    so a reconnect before any item resumes without a gap), then ``notification`` (``id:``
    the item's id) for the backlog and live items, or ``reset`` (``id:`` the cursor) past
    ``BACKLOG_LIMIT``; ``read`` on read changes; a ``: ping`` comment after
    ``HEARTBEAT_SECONDS`` of silence. A revoked token ends the stream; a draining process
    ends it with ``event: reconnect`` (``notify.drain``).
    """

    transport = "sse"

    async def handle(self, body):
        if not await self.check_request():
            return
        try:
            since = parse_int("since", query_params(self.scope).get("since"), default=None)
            header = self._last_event_id()
            last_event_id = parse_int("Last-Event-ID", header, default=None) if header else None
        except InvalidParameter as exc:
            return await self.send_error(400, exc.code, str(exc))
        if last_event_id is not None:
            since = last_event_id
        await self.subscribe()
        stream = await aread_stream(
            self.user, cursor=since, limit=notify_settings.BACKLOG_LIMIT, groups=True
        )
        self.group_ids = stream.group_ids
        self.cursor = stream.latest if since is None else since
        if self.finished:  # revoked while the backlog was read
            return
        await self.send_headers(status=200, headers=SSE_HEADERS)
        self.headers_sent = True
        hello = {"cursor": stream.latest, "unread": stream.unread, "heartbeat": notify_settings.HEARTBEAT_SECONDS}
        text = sse_event("hello", hello, event_id=self.cursor, retry_ms=notify_settings.SSE_RETRY_MS)
        await self.send_text(text + self._backlog(stream))
        await self.flush_pending()

    def _last_event_id(self) -> str | None:
        for name, value in self.scope.get("headers", ()):
            if name == b"last-event-id":
                return value.decode("latin1").strip()
        return None

    def _backlog(self, stream: StreamRead) -> str:
        if stream.more:
            self.cursor = stream.latest
            return sse_event("reset", {"cursor": stream.latest}, event_id=stream.latest)
        events = []
        for item in stream.items:
            if item["id"] > self.cursor:
                self.cursor = item["id"]
                events.append(sse_event("notification", item, event_id=item["id"]))
        return "".join(events)

    async def send_text(self, text: str) -> None:
        if self.finished or not text:
            return
        self.last_sent = time.monotonic()
        await self.send_body(text.encode(), more_body=True)

    # Subscriber: called by the hub

    async def deliver(self, pushes: list[Push]) -> None:
        fresh = self.take_new(pushes)
        await self.send_text("".join(push.sse_event for push in fresh))
        metrics.delivered(self.transport, fresh)
        backlog = buffered_bytes(self.base_send)
        if backlog is not None and backlog > notify_settings.MAX_SEND_BUFFER_BYTES:
            # A reader that does not keep up must not grow our memory without bound:
            # drop it; EventSource reconnects with Last-Event-ID and resumes.
            logger.warning("notify: closing slow SSE stream of user %s (%d bytes unsent)", self.user_id, backlog,
                           extra=log_fields("sse.slow_client_dropped", self, unsent_bytes=backlog))
            metrics.slow_client_dropped()
            self.base_send.args[0].transport.abortConnection()

    async def deliver_read(self, event) -> None:
        if event.get("all"):
            data = {"all": True, "cursor": event["cursor"], "unread": event["unread"]}
        else:
            data = {"ids": event["ids"], "unread": event["unread"]}
        await self.send_text(sse_event("read", data))

    async def heartbeat(self) -> None:
        await self.send_text(": ping\n\n")

    async def revoke(self) -> None:
        if not self.headers_sent:
            return await self.send_error(401, "not_authenticated", "The token was revoked or the user deactivated.")
        await self._end()

    async def drain(self, delay_ms: int) -> None:
        await self.send_text(sse_event("reconnect", {"reconnect_ms": delay_ms}, retry_ms=delay_ms))
        await self._end()

    async def _end(self) -> None:
        """End the stream (the response is complete) and let the consumer finish."""
        if not self.finished:
            await self.send_body(b"")
            self.finished = True
            await self._teardown()
            if self._wake is not None:
                self._wake()
