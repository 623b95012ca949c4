"""Django URL routes of notify, relative to where a host mounts them (docs/protocol.md §4, §5, §7).

Mount under a prefix of its own, e.g. ``path("alerts/", include("notify.urls"))``:

- ``alerts/``: the signed-in user's inbox page;
- ``alerts/api/...``: the inbox and send HTTP APIs, and their OpenAPI 3 document at
  ``alerts/api/openapi.json``;
- ``alerts/poll/`` and ``alerts/stream/``: long-poll and SSE, answered by Channels
  consumers that ``notify.asgi.get_application`` routes ahead of Django (the views
  named here only answer when that application is not in front);
- any other path under the prefix: ``404 not_found`` as JSON (so do not mount it at
  the site root: it would answer for every path that comes after it).
"""

from django.urls import include, path, re_path

from . import health, views
from .http import api, errors

app_name = "notify"

urlpatterns = [
    path("", views.inbox_page, name="inbox"),
    path("preferences/", views.preferences_page, name="preferences"),
    path("sw.js", views.service_worker, name="service-worker"),
    path("api/", include(api.urlpatterns())),
    path("poll/", views.stream_not_routed, name="poll"),
    path("stream/", views.stream_not_routed, name="stream"),
    # Operator endpoints (notify/health.py): health, readiness, Prometheus metrics.
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics_view, name="metrics"),
    re_path(r"^.*$", errors.not_found),
]
