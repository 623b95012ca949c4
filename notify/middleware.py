"""ASGI guards for what Django's middleware does not reach: Channels consumers and
refusals that must happen before a request body or a handshake costs anything (issue 10).

``NotifyGuard`` wraps the whole ASGI application (``notify.asgi.wrap``):

- HTTP under notify's prefix (``/notify/`` on this site): a ``Host`` outside ``ALLOWED_HOSTS`` answers ``400
  bad_request`` as docs/protocol.md §2 JSON (logged on ``django.security.DisallowedHost`` as
  Django logs it); a ``Content-Length`` over ``MAX_BODY_BYTES`` answers ``413
  payload_too_large`` before the body is read; Django's ``SecurityMiddleware`` runs
  for the consumers too (``SECURE_SSL_REDIRECT`` redirects plain-HTTP requests, also
  behind ``SECURE_PROXY_SSL_HEADER``), and every answer gets its headers
  (``X-Content-Type-Options: nosniff``, HSTS on HTTPS, ``Referrer-Policy``, ...).
- WebSocket: with ``SECURE_SSL_REDIRECT``, a handshake over plain HTTP is refused
  (HTTP 403); at most ``MAX_HANDSHAKES_PER_CLIENT`` handshakes of one client address
  are in progress at once, more are refused. Both logged at WARNING on ``notify``.

``refuse_unrouted`` is the WebSocket route of last resort: a path no route matches is
refused (HTTP 403) and logged at INFO instead of Channels' ``ValueError`` (a 500).
"""

import io
import logging
from collections import Counter

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse
from django.middleware.security import SecurityMiddleware

from .conf import notify_settings
from .http.errors import error_body
from .links import mount_prefix
from .realtime.daphne import wrap_send
from .transports.http import JSON_HEADERS

logger = logging.getLogger("notify")


async def send_error(send, status: int, code: str, message: str, headers=()) -> None:
    """Send a complete docs/protocol.md §2 error response on an ASGI HTTP connection."""
    await send({"type": "http.response.start", "status": status,
                "headers": [*JSON_HEADERS, *headers]})
    await send({"type": "http.response.body", "body": error_body(code, message)})


def django_request(scope) -> ASGIRequest:
    """Return a bodiless Django request for an HTTP or WebSocket scope (``ws`` and
    ``wss`` read as ``http`` and ``https``), to ask Django's own rules about it."""
    if scope["type"] == "websocket":
        scheme = {"ws": "http", "wss": "https"}.get(scope.get("scheme") or "ws", "http")
        scope = {**scope, "type": "http", "method": "GET", "scheme": scheme}
    return ASGIRequest(scope, io.BytesIO())


def _security() -> SecurityMiddleware:
    return SecurityMiddleware(lambda request: HttpResponse())


def _needs_redirect(scope) -> bool:
    """Whether Django's ``SecurityMiddleware`` would redirect this request to HTTPS."""
    try:
        return _security().process_request(django_request(scope)) is not None
    except DisallowedHost:  # raised while building the https:// URL: not secure
        return True


def _content_length(scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class NotifyGuard:
    """ASGI middleware: the guards listed in this module's docstring.

    Args:
        app: the ASGI application (HTTP and WebSocket) to guard.
    """

    def __init__(self, app):
        self.app = app
        self.handshakes: Counter[str] = Counter()  # in progress, by client address

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith(mount_prefix()):
            return await self.http(scope, receive, send)
        if scope["type"] == "websocket":
            return await self.websocket(scope, receive, send)
        return await self.app(scope, receive, send)

    async def http(self, scope, receive, send):
        request = django_request(scope)
        try:
            request.get_host()
        except DisallowedHost as exc:
            # As django.core.handlers.exception.response_for_exception logs it.
            logging.getLogger("django.security.DisallowedHost").error(
                str(exc), exc_info=exc, extra={"status_code": 400, "request": request}
            )
            return await send_error(send, 400, "bad_request", "The Host header is not allowed.",
                                    [(b"x-content-type-options", b"nosniff")])
        security = _security()
        redirect = security.process_request(request)
        if redirect is not None:
            await send({"type": "http.response.start", "status": redirect.status_code,
                        "headers": [(b"location", redirect["Location"].encode("latin1"))]})
            return await send({"type": "http.response.body", "body": b""})
        extra = [(name.lower().encode("latin1"), value.encode("latin1"))
                 for name, value in security.process_response(request, HttpResponse()).items()
                 if name.lower() != "content-type"]
        limit = notify_settings.MAX_BODY_BYTES
        length = _content_length(scope)
        if length is not None and length > limit:
            return await send_error(send, 413, "payload_too_large",
                                    f"The request body is over {limit} bytes.", extra)

        def add_headers(message):
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", ())}
                added = [(name, value) for name, value in extra if name not in present]
                if added:
                    message = {**message, "headers": [*message.get("headers", ()), *added]}
            return message

        return await self.app(scope, receive, wrap_send(send, add_headers))

    async def websocket(self, scope, receive, send):
        client = (scope.get("client") or ("unknown", 0))[0]
        if settings.SECURE_SSL_REDIRECT and _needs_redirect(scope):
            return await refuse(receive, send, "plain HTTP while SECURE_SSL_REDIRECT is on", scope)
        cap = notify_settings.MAX_HANDSHAKES_PER_CLIENT
        if cap and self.handshakes[client] >= cap:
            return await refuse(receive, send, f"over {cap} handshakes in progress from this address", scope)
        self.handshakes[client] += 1
        in_progress = True

        def done():
            nonlocal in_progress
            if in_progress:
                in_progress = False
                self.handshakes[client] -= 1
                if self.handshakes[client] <= 0:
                    del self.handshakes[client]

        def count(message):
            if message["type"] in ("websocket.accept", "websocket.close"):
                done()
            return message

        try:
            return await self.app(scope, receive, wrap_send(send, count))
        finally:
            done()


async def refuse(receive, send, reason: str, scope, level: int = logging.WARNING) -> None:
    """Refuse a WebSocket handshake (HTTP 403 under daphne) and log why.

    Args:
        reason: logged on the ``notify`` logger with the path, ``Origin`` and client.
        level: the logging level (WARNING; INFO for an unknown path).
    """
    origin = next((value.decode("latin1") for name, value in scope.get("headers", ()) if name == b"origin"), None)
    logger.log(level, "notify: WebSocket refused (%s); path=%r Origin=%r client=%r",
               reason, scope.get("path"), origin, scope.get("client"))
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close"})


async def refuse_unrouted(scope, receive, send) -> None:
    """The WebSocket route of last resort: refuse (HTTP 403), logged at INFO."""
    await refuse(receive, send, "no route for this path", scope, level=logging.INFO)
