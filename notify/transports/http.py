"""What long-poll and SSE share: a Channels ``AsyncHttpConsumer`` routed ahead of Django
(``notify.asgi``) whose request outlives ``handle()``, with auth checks, JSON errors and
hub registration (docs/protocol.md §4, §4b).

A waiting request is a coroutine and a ``Connection`` in the hub's registry: it holds no
thread (Django's ASGI handler would pin one per request) and no database connection
(reads go through ``database_sync_to_async``, which hands the connection back when they
end). ``handle()`` never blocks: it sends the answer, or the headers and first events,
and returns, so the consumer is free to receive ``http.disconnect``.
"""

import asyncio
import logging
from typing import Any

from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer

from ..http.errors import error_body
from ..realtime import daphne
from ..realtime.hub import Connection, get_hub
from ..serializers import dumps
from .base import DirectDispatch

logger = logging.getLogger(__name__)

JSON_HEADERS = [
    (b"content-type", b"application/json"),
    (b"cache-control", b"no-store"),
]


class StreamConsumer(DirectDispatch, AsyncHttpConsumer):
    """What long-poll and SSE share: auth checks, JSON errors, hub registration, and a
    request that outlives ``handle()``.

    ``AsyncHttpConsumer.http_request`` ends the consumer when ``handle()`` returns; here
    it only ends when ``finish()`` ran (the response is complete) or the client went
    away (``http.disconnect``).
    """

    # No channel of its own: the process hub receives one message per push.
    channel_layer_alias = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = None
        self.link: Connection | None = None
        self.subscribed = False
        self.finished = False
        self._wake = None  # ends the consumer once the response is complete
        self.headers_sent = False  # SSE: the 200 and its headers are out

    async def __call__(self, scope, receive, send):
        queue = daphne.receive_queue(receive)
        if queue is not None:
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
            get_hub().unsubscribe(self.link)
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
            get_hub().unsubscribe(self.link)
            self.subscribed = False
        self.cleanup()
        if self.link is not None:
            self.link.sent()
        await self.send_response(status, body, headers=headers)
        if self._wake is not None:
            self._wake()

    async def check_request(self) -> bool:
        """Answer 405/401/403 when the request may not use the stream; return whether
        it may. Sets ``user`` and ``link``."""
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
        self.link = Connection(self, user, token.pk if token is not None else None)
        return True

    async def subscribe(self) -> None:
        """Register ``link`` with the hub before the backlog is read (what arrives
        meanwhile waits in its ``pending``)."""
        await get_hub().subscribe(self.link)
        self.subscribed = True
