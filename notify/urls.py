"""Django URL routes of notify: the inbox page and the HTTP APIs (CONTRACT §5, §7).

``/notify/poll/`` and ``/notify/stream/`` are Channels consumers routed ahead of Django
(``notify.routing``); any other path under ``/notify/`` that matches no route here
answers ``404 not_found`` as JSON.
"""

from django.urls import path, re_path

from . import api_views, health, views

app_name = "notify"

urlpatterns = [
    path("", views.inbox_page, name="inbox"),
    path("notify/api/notifications/", api_views.notifications, name="api-notifications"),
    path("notify/api/notifications/unread-count/", api_views.unread, name="api-unread-count"),
    path("notify/api/notifications/read/", api_views.mark_read, name="api-read"),
    path("notify/api/send/", api_views.send, name="api-send"),
    path("notify/api/announce/", api_views.announce, name="api-announce"),
    # Operator endpoints (notify/health.py): health, readiness, Prometheus metrics.
    path("notify/healthz", health.healthz, name="healthz"),
    path("notify/readyz", health.readyz, name="readyz"),
    path("notify/metrics", health.metrics_view, name="metrics"),
    re_path(r"^notify(?:/.*)?$", api_views.not_found),
]
