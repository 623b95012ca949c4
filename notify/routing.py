"""ASGI routes of notify: the WebSocket consumer and the async HTTP streams."""

from django.urls import path

from .auth import TokenOrSessionMiddleware
from .consumers import NotificationConsumer
from .streams import EventStreamConsumer, PollConsumer

websocket_urlpatterns = [
    path("ws/notify/", TokenOrSessionMiddleware(NotificationConsumer.as_asgi())),
]

# Long-poll and SSE are Channels consumers routed ahead of Django (see config/asgi.py),
# so a held request holds no thread (Django's ASGI handler would pin one per request).
http_urlpatterns = [
    path("notify/poll/", TokenOrSessionMiddleware(PollConsumer.as_asgi())),
    path("notify/stream/", TokenOrSessionMiddleware(EventStreamConsumer.as_asgi())),
]
