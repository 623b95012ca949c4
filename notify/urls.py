"""Django URL routes of notify, relative to where a host mounts them (docs/protocol.md §4, §5, §7).

Mount under a prefix of its own, e.g. ``path("alerts/", include("notify.urls"))``:

- ``alerts/``: the signed-in user's inbox page;
- ``alerts/api/...``: the inbox and send HTTP APIs;
- ``alerts/poll/`` and ``alerts/stream/``: long-poll and SSE, answered by Channels
  consumers that ``notify.asgi.get_application`` routes ahead of Django (the views
  named here only answer when that application is not in front);
- any other path under the prefix: ``404 not_found`` as JSON (so do not mount it at
  the site root: it would answer for every path that comes after it).
"""

from django.urls import path, re_path

from . import api_views, views

app_name = "notify"

urlpatterns = [
    path("", views.inbox_page, name="inbox"),
    path("api/notifications/", api_views.notifications, name="api-notifications"),
    path("api/notifications/unread-count/", api_views.unread, name="api-unread-count"),
    path("api/notifications/read/", api_views.mark_read, name="api-read"),
    path("api/send/", api_views.send, name="api-send"),
    path("api/announce/", api_views.announce, name="api-announce"),
    path("poll/", views.stream_not_routed, name="poll"),
    path("stream/", views.stream_not_routed, name="stream"),
    re_path(r"^.*$", api_views.not_found),
]
