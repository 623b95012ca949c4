"""Every wire encoding of the real-time transports, in one place.

- WebSocket text frames (RFC 6455) carry compact JSON objects (``ws_json``); a
  notification frame wraps the notification object's JSON text (``ws_notification``),
  encoded once per process for live pushes (``Push``) and per item for a backlog.
- Server-sent events (HTML Living Standard, "server-sent events") have ``retry:``,
  ``id:``, ``event:`` and ``data:`` lines and a blank line (``sse_event``,
  ``sse_notification``).
- ``text_frame`` frames a UTF-8 payload as a server-to-client WebSocket frame on the wire
  (RFC 6455 §5.2), for ``notify.realtime.daphne.SocketWriter``.
"""

import struct
from typing import Any

from .. import audience
from ..serializers import dumps


def ws_json(frame: dict[str, Any]) -> str:
    """Return a WebSocket frame object as compact JSON text."""
    return dumps(frame)


def ws_notification(item_json: str) -> str:
    """Return the ``notification`` frame around a notification object's JSON text."""
    return f'{{"type":"notification","notification":{item_json}}}'


def sse_event(event: str, data: dict[str, Any], *, event_id: int | None = None,
              retry_ms: int | None = None) -> str:
    """Return one SSE event: optional ``retry:`` (milliseconds) and ``id:`` fields,
    ``event:``, one ``data:`` line of compact JSON, and the blank line that ends it."""
    head = f"retry: {retry_ms}\n" if retry_ms is not None else ""
    if event_id is not None:
        head += f"id: {event_id}\n"
    return f"{head}event: {event}\ndata: {dumps(data)}\n\n"


def sse_notification(item_id: int, item_json: str) -> str:
    """Return the ``notification`` event of an item, with ``id:`` its id."""
    return f"id: {item_id}\nevent: notification\ndata: {item_json}\n\n"


# An SSE comment line: keeps proxies and EventSource's own watchdogs from timing out.
SSE_PING = ": ping\n\n"


def read_frame(event: dict[str, Any]) -> dict[str, Any]:
    """Return the fields of a ``read`` frame or event from a ``notify.read`` message:
    ``ids`` and ``unread``, or ``all``, ``cursor`` and ``unread``."""
    if event.get("all"):
        return {"all": True, "cursor": event["cursor"], "unread": event["unread"]}
    return {"ids": event["ids"], "unread": event["unread"]}


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


class Push:
    """One stream entry as it travels on the channel layer, with lazily encoded frames.

    Args:
        data: ``{"obj": <notification object>, "recipient": user pk or None,
            "group": audience group pk or None, "created": POSIX seconds,
            "expires": POSIX seconds or None}``.
    """

    __slots__ = ("id", "obj", "recipient", "group", "created", "expires", "_json", "_ws", "_wire", "_sse")

    def __init__(self, data: dict[str, Any]):
        self.obj = data["obj"]
        self.id = self.obj["id"]
        self.recipient = data.get("recipient")
        self.group = data.get("group")
        self.created = data.get("created", 0.0)
        self.expires = data.get("expires")
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
            self._ws = ws_notification(self.json)
        return self._ws

    @property
    def ws_wire(self) -> bytes:
        """``ws_frame`` as a complete WebSocket text frame on the wire, encoded once
        (see ``notify.realtime.daphne.SocketWriter``)."""
        if self._wire is None:
            self._wire = text_frame(self.ws_frame.encode())
        return self._wire

    @property
    def sse_event(self) -> str:
        """The SSE ``notification`` event (HTML SSE spec: id/event/data lines and a
        blank line), encoded once."""
        if self._sse is None:
            self._sse = sse_notification(self.id, self.json)
        return self._sse

    def visible_to(self, link, now: float) -> bool:
        """Whether the user of ``link`` (a ``Connection``) sees this entry
        (``notify.audience.sees``)."""
        return audience.sees(recipient=self.recipient, group=self.group, created=self.created,
                             expires=self.expires, user_id=link.user_id, group_ids=link.group_ids,
                             joined=link.joined, now=now)
