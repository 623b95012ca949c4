"""ASGI entry point: ``daphne config.asgi:application``.

HTTP: notify's long-poll and SSE consumers first (they wait without a thread), then
Django for everything else (pages, admin, inbox and send APIs, static files through
WhiteNoise). WebSocket: ``/ws/notify/``, any other path refused. Both behind notify's
token-or-session auth, and behind ``NotifyGuard`` (notify/middleware.py: allowed hosts,
body size, SSL redirect and security headers for the consumers too).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from notify.middleware import NotifyGuard, refuse_unrouted  # noqa: E402
from notify.routing import http_urlpatterns, websocket_urlpatterns  # noqa: E402

application = NotifyGuard(
    ProtocolTypeRouter(
        {
            "http": URLRouter([*http_urlpatterns, re_path(r"", django_asgi_app)]),
            "websocket": URLRouter([*websocket_urlpatterns, re_path(r"", refuse_unrouted)]),
        }
    )
)
