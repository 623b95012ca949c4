"""Server-Sent Events: ``GET <prefix>stream/`` as ``text/event-stream``
(docs/protocol.md §4b; the HTML Living Standard's "server-sent events")."""


from .. import metrics
from ..conf import notify_settings
from ..exceptions import InvalidParameter
from ..params import parse_int, query_params
from ..realtime import frames
from ..realtime.frames import Push
from ..selectors import StreamRead, aread_stream
from ..serializers import dumps
from .base import drop_if_slow
from .http import StreamConsumer


SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    # nginx and similar proxies buffer responses unless told not to.
    (b"x-accel-buffering", b"no"),
]


class EventStreamConsumer(StreamConsumer):
    """``GET /notify/stream/?since=<id>`` as ``text/event-stream`` (docs/protocol.md §4b).

    Resumes from the ``Last-Event-ID`` header (it wins over ``since``); neither means
    live from now; a bad value is ``400 invalid_parameter`` before the stream starts.
    Events: ``hello`` first (``cursor``, ``unread``, ``heartbeat`` seconds; with
    ``retry:`` in milliseconds and ``id:`` set to the position the stream starts from,
    so a reconnect before any item resumes without a gap), then ``notification`` (``id:``
    the item's id) for the backlog and live items, or ``reset`` (``id:`` the cursor) past
    ``BACKLOG_LIMIT``; ``read`` on read changes; a ``: ping`` comment after
    ``HEARTBEAT_SECONDS`` of silence. A revoked token ends the stream.
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
        link = self.link
        link.group_ids = stream.group_ids
        link.cursor = stream.latest if since is None else since
        if self.finished:  # revoked while the backlog was read
            return
        await self.send_headers(status=200, headers=SSE_HEADERS)
        self.headers_sent = True
        hello = {"cursor": stream.latest, "unread": stream.unread, "heartbeat": notify_settings.HEARTBEAT_SECONDS}
        text = frames.sse_event("hello", hello, event_id=link.cursor, retry_ms=notify_settings.SSE_RETRY_MS)
        await self.send_text(text + self._backlog(stream))
        await link.flush_pending()

    def _last_event_id(self) -> str | None:
        for name, value in self.scope.get("headers", ()):
            if name == b"last-event-id":
                return value.decode("latin1").strip()
        return None

    def _backlog(self, stream: StreamRead) -> str:
        link = self.link
        if stream.more:
            link.cursor = stream.latest
            return frames.sse_event("reset", {"cursor": stream.latest}, event_id=stream.latest)
        events = []
        for item in stream.items:
            if item["id"] > link.cursor:
                link.cursor = item["id"]
                events.append(frames.sse_notification(item["id"], dumps(item)))
        return "".join(events)

    async def send_text(self, text: str) -> None:
        if self.finished or not text:
            return
        self.link.sent()
        await self.send_body(text.encode(), more_body=True)

    # The link's sink: called by the hub

    async def deliver(self, pushes: list[Push]) -> None:
        fresh = self.link.take_new(pushes)
        await self.send_text("".join(push.sse_event for push in fresh))
        metrics.delivered(self.transport, fresh)
        drop_if_slow(self, "SSE stream")

    async def deliver_read(self, event) -> None:
        await self.send_text(frames.sse_event("read", frames.read_frame(event)))

    async def heartbeat(self) -> None:
        await self.send_text(frames.SSE_PING)

    async def revoke(self) -> None:
        if not self.headers_sent:
            return await self.send_error(401, "not_authenticated", "The token was revoked or the user deactivated.")
        await self._end()

    async def drain(self, delay_ms: int) -> None:
        await self.send_text(frames.sse_event("reconnect", {"reconnect_ms": delay_ms}, retry_ms=delay_ms))
        await self._end()

    async def _end(self) -> None:
        """End the stream (the response is complete) and let the consumer finish."""
        if not self.finished:
            await self.send_body(b"")
            self.finished = True
            await self._teardown()
            if self._wake is not None:
                self._wake()
