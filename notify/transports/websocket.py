"""The WebSocket consumer at ``/ws/notify/`` (docs/protocol.md §3)."""

import json
import logging
from urllib.parse import urlparse

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.security.websocket import OriginValidator
from django.conf import settings

from .. import drain, metrics, services
from ..conf import notify_settings
from ..exceptions import InvalidParameter, RateLimited
from ..logging import log_fields
from ..params import parse_int, query_params
from ..receipts import device_key, get_ack_buffer
from ..realtime import daphne, frames
from ..realtime.frames import Push
from ..realtime.hub import Connection, get_hub
from ..selectors import StreamRead, aread_stream
from ..serializers import dumps
from .base import DirectDispatch, drop_if_slow

logger = logging.getLogger("notify")

SUBPROTOCOL = "notify.v1"
# Close codes (daphne lets an application close with 1000 or 3000-4999 only).
CLOSE_INVALID_PARAMETER = 4400
CLOSE_TOO_LARGE = 4009
CLOSE_REVOKED = 4401


def origin_allowed(scope) -> tuple[bool, str | None]:
    """Whether the handshake's ``Origin`` matches ``ALLOWED_HOSTS`` (host and port, any
    scheme), as Channels' ``AllowedHostsOriginValidator`` judges it.

    Returns:
        ``(allowed, origin header or None)``.
    """
    origin = None
    for name, value in scope.get("headers", ()):
        if name == b"origin":
            origin = value.decode("latin1")
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = ["localhost", "127.0.0.1", "[::1]"]
    try:
        parsed = urlparse(origin) if origin is not None else None
        return OriginValidator(None, allowed_hosts).valid_origin(parsed), origin
    except ValueError:
        return False, origin


class NotificationConsumer(DirectDispatch, AsyncWebsocketConsumer):
    """Push a user's stream over ``/ws/notify/?since=<id>``.

    Handshake: refused (HTTP 403, never opened) without valid credentials, with a
    service key, cookie-authenticated with a missing or foreign ``Origin``, or when the
    user already has ``MAX_CONNECTIONS_PER_USER`` connections in this process; each
    refusal is logged at WARNING on the ``notify`` logger. A bad ``since`` gets an
    ``error`` frame (``invalid_parameter``) and close code 4400.

    Then: ``hello`` (``cursor``, ``unread``, ``heartbeat`` seconds); the backlog after
    ``since`` oldest first (or ``reset`` past ``BACKLOG_LIMIT``); then live items, with
    no gap and no duplicate between the two: its ``link`` registers with the process
    hub before it reads the backlog, and whatever arrives meanwhile waits in the link's
    ``pending`` until the backlog is out. ``ping`` every ``HEARTBEAT_SECONDS`` of
    silence. Client frames: ``read``, ``read_all``, ``ping``, ``ack`` (notify.receipts); anything else gets an
    ``error`` frame (``invalid_frame``); a message over ``MAX_FRAME_BYTES`` closes 4009.
    A revoked token closes 4401.

    The consumer has no channel of its own (``channel_layer_alias = None``): the hub
    receives one channel-layer message per push for the whole process.
    """

    channel_layer_alias = None
    transport = "websocket"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = None
        self.link: Connection | None = None
        self.subscribed = False
        self.writer = None
        self.device = None  # delivery receipts' device name, from the first ack

    # Handshake

    async def connect(self):
        user = self.scope.get("user")
        token = self.scope.get("notify_token")
        if user is None or not user.is_authenticated:
            reason = "service key" if token is not None and token.is_service else "no valid credentials"
            return await self._refuse(reason)
        if self.scope.get("notify_auth") == "session":
            allowed, origin = origin_allowed(self.scope)
            if not allowed:
                return await self._refuse("cookie auth with missing or foreign Origin", origin, "refused_origin")
        cap = notify_settings.MAX_CONNECTIONS_PER_USER
        if get_hub().connection_count(user.pk) >= cap:
            return await self._refuse(f"user {user.pk} has {cap} connections open in this process",
                                      None, "refused_overload")
        self.user = user
        self.link = link = Connection(self, user, token.pk if token is not None else None)
        subprotocols = self.scope.get("subprotocols") or []
        await self.accept(SUBPROTOCOL if SUBPROTOCOL in subprotocols else None)
        metrics.handshake("accepted")
        self.writer = daphne.SocketWriter.for_send(self.base_send)
        try:
            since = parse_int("since", query_params(self.scope).get("since"), default=None)
        except InvalidParameter as exc:
            await self._send_error(exc.code, str(exc))
            return await self.close(CLOSE_INVALID_PARAMETER)
        await get_hub().subscribe(link)
        self.subscribed = True
        stream = await aread_stream(
            user, cursor=since, limit=notify_settings.BACKLOG_LIMIT, groups=True
        )
        link.group_ids = stream.group_ids
        await self.send_frame(
            {"type": "hello", "cursor": stream.latest, "unread": stream.unread,
             "heartbeat": notify_settings.HEARTBEAT_SECONDS}
        )
        link.cursor = stream.latest if since is None else since
        await self._send_backlog(stream)
        await link.flush_pending()

    async def _refuse(self, reason: str, origin: str | None = None, result: str = "refused_auth"):
        client = self.scope.get("client")
        metrics.handshake(result)
        logger.warning("notify: WebSocket refused (%s); Origin=%r client=%r", reason, origin, client,
                       extra=log_fields("websocket.refused", self, reason=reason, origin=origin, result=result))
        await self.close()  # before accept: daphne answers HTTP 403

    async def _send_backlog(self, stream: StreamRead) -> None:
        link = self.link
        if stream.more:
            link.cursor = stream.latest
            await self.send_frame({"type": "reset", "cursor": stream.latest})
            return
        for item in stream.items:
            if item["id"] > link.cursor:
                link.cursor = item["id"]
                await self.send_text(frames.ws_notification(dumps(item)))

    async def websocket_disconnect(self, message):
        # No groups of its own to leave, and no connection sweep (see DirectDispatch).
        await self.disconnect(message.get("code"))
        raise StopConsumer()

    async def disconnect(self, code):
        if self.subscribed:
            get_hub().unsubscribe(self.link)
            self.subscribed = False

    # Client frames

    async def websocket_receive(self, message):
        text, data = message.get("text"), message.get("bytes")
        size = len(text.encode()) if text is not None else len(data or b"")
        if size > notify_settings.MAX_FRAME_BYTES:
            return await self.close(CLOSE_TOO_LARGE)
        if self.user is None:
            return
        if text is None:
            return await self._send_error("invalid_frame", "binary frames are not supported")
        try:
            frame = json.loads(text)
        except (ValueError, RecursionError):  # deep nesting exhausts the decoder's stack
            return await self._send_error("invalid_frame", "not valid JSON")
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "ping":
            return await self.send_frame({"type": "pong"})
        if kind == "read":
            ids = frame.get("ids")
            if not isinstance(ids, list) or not all(type(i) is int for i in ids):
                return await self._send_error("invalid_frame", "read: ids must be a list of integers")
            if len(ids) > notify_settings.MAX_READ_IDS:
                return await self._send_error(
                    "invalid_frame", f"read: at most {notify_settings.MAX_READ_IDS} ids"
                )
            return await self._mark_read(ids)
        if kind == "read_all":
            return await self._mark_read(None)
        if kind == "ack":  # delivery receipt (notify.receipts)
            if type(frame.get("id")) is not int:
                return await self._send_error("invalid_frame", "ack: id must be an integer")
            if self.device is None:
                self.device = device_key(query_params(self.scope).get("client"), token_id=self.link.token_id)
            return get_ack_buffer().add(self.link.user_id, self.device, frame["id"])
        if not isinstance(frame, dict) or not isinstance(kind, str):
            return await self._send_error("invalid_frame", "a frame is a JSON object with a string type")
        await self._send_error("invalid_frame", f"unknown type {kind[:40]!r}")

    async def _mark_read(self, ids: list[int] | None) -> None:
        try:
            await database_sync_to_async(services.client_mark_read)(self.user, ids)
        except RateLimited as exc:
            await self._send_error("rate_limited", f"Too many read requests; retry in {exc.retry_after} s.")

    # Sending

    async def send_text(self, text: str) -> None:
        if self.link is not None:
            self.link.sent()
        try:
            await self.base_send({"type": "websocket.send", "text": text})
        except Exception as exc:
            if not daphne.closed_while_sending(exc):
                raise

    async def send_frame(self, frame: dict) -> None:
        await self.send_text(frames.ws_json(frame))

    async def _send_error(self, code: str, message: str) -> None:
        await self.send_frame({"type": "error", "code": code, "message": message})

    # The link's sink: called by the hub

    async def deliver(self, pushes: list[Push]) -> None:
        writer = self.writer
        fresh = self.link.take_new(pushes)
        for push in fresh:
            if writer is None or not writer.write(push.ws_wire):
                await self.send_text(push.ws_frame)
        metrics.delivered(self.transport, fresh)
        self.link.sent()
        drop_if_slow(self, "WebSocket")

    async def deliver_read(self, event) -> None:
        await self.send_frame({"type": "read", **frames.read_frame(event)})

    async def heartbeat(self) -> None:
        await self.send_frame({"type": "ping"})

    async def revoke(self) -> None:
        await self.close(CLOSE_REVOKED)

    async def drain(self, delay_ms: int) -> None:
        if self.subscribed:
            get_hub().unsubscribe(self.link)
            self.subscribed = False
        await drain.close_for_restart(self.base_send, delay_ms)
