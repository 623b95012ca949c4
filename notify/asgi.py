"""The ASGI application of a site that runs notify: ``get_application(django_asgi_app)``.

A host project's ``asgi.py``::

    import os
    from django.core.asgi import get_asgi_application

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    django_asgi_app = get_asgi_application()  # first: sets Django up

    from notify.asgi import get_application  # noqa: E402

    application = get_application(django_asgi_app)

Routes (docs/protocol.md §3, §4, §4b):

- WebSocket at ``NOTIFY["WEBSOCKET_PATH"]`` (default ``/ws/notify/``);
- long-poll and Server-Sent Events wherever the URLconf mounted ``notify.urls`` (the
  reversed ``notify:poll`` and ``notify:stream`` URLs), served by Channels consumers
  ahead of Django, so a held request holds no thread (Django's ASGI handler would pin
  one per request);
- every other HTTP request to ``django_asgi_app``.
"""

import functools
from typing import Any

from channels.routing import ProtocolTypeRouter
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.urls import NoReverseMatch, get_script_prefix, reverse

from .auth import TokenOrSessionMiddleware
from .conf import notify_settings
from .transports.longpoll import PollConsumer
from .transports.sse import EventStreamConsumer
from .transports.websocket import NotificationConsumer

# The URL names in notify.urls whose requests the consumers below answer.
STREAM_URL_NAMES = {"notify:poll": "poll", "notify:stream": "stream"}


def get_application(django_asgi_app, *, websocket=None):
    """Return the site's ASGI application: notify's real-time routes in front of Django.

    Args:
        django_asgi_app: the site's Django application, ``get_asgi_application()``
            (call that before importing this module's callers' other code: it sets
            Django up).
        websocket: optional ASGI application for the host's own WebSocket routes (e.g. a
            Channels ``URLRouter``); it gets every WebSocket path but notify's. Without
            it such handshakes are refused (HTTP 403).
    Returns:
        An ASGI application for ``http`` and ``websocket`` scopes.
    """
    http = {
        "poll": TokenOrSessionMiddleware(PollConsumer.as_asgi()),
        "stream": TokenOrSessionMiddleware(EventStreamConsumer.as_asgi()),
    }
    notify_websocket = TokenOrSessionMiddleware(NotificationConsumer.as_asgi())

    async def route_http(scope, receive, send):
        app = http.get(stream_paths().get(_local_path(scope)), django_asgi_app)
        return await app(scope, receive, send)

    async def route_websocket(scope, receive, send):
        if _local_path(scope) == notify_settings.WEBSOCKET_PATH:
            return await notify_websocket(scope, receive, send)
        if websocket is not None:
            return await websocket(scope, receive, send)
        return await _refuse_websocket(scope, receive, send)

    return wrap(ProtocolTypeRouter({"http": route_http, "websocket": route_websocket}))


def wrap(application):
    """Wrap the routed application in the ASGI middleware every notify site needs.

    The one place for guards that must see each connection before routing (e.g.
    hostile-input limits, a server adapter); ``get_application`` applies it, so a host
    project gets them without touching its ``asgi.py``. Today there are none.

    Returns:
        The wrapped ASGI application.
    """
    return application


@functools.cache
def stream_paths() -> dict[str, str]:
    """Return ``{path: "poll" | "stream"}``: where the URLconf mounted notify's
    long-poll and SSE routes, as paths relative to the script prefix.

    Reversed once and cached (the cache is dropped when ``ROOT_URLCONF`` changes).
    Returns an empty dict when ``notify.urls`` is not in the URLconf (check
    ``notify.W002`` reports that).
    """
    paths = {}
    prefix = get_script_prefix()
    for name, kind in STREAM_URL_NAMES.items():
        try:
            url = reverse(name)
        except NoReverseMatch:
            continue
        paths["/" + url[len(prefix):] if url.startswith(prefix) else url] = kind
    return paths


@receiver(setting_changed)
def _forget_stream_paths(*, setting: str, **kwargs: Any) -> None:
    if setting == "ROOT_URLCONF":
        stream_paths.cache_clear()


def _local_path(scope) -> str:
    """The request path without the ASGI ``root_path`` (a server's mount point)."""
    path = scope["path"]
    root = scope.get("root_path") or ""
    return path[len(root):] if root and path.startswith(root) else path


async def _refuse_websocket(scope, receive, send) -> None:
    """Refuse a handshake on a path nobody serves: the client sees HTTP 403."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": 1000})
