"""Django URL routes of notify: the inbox page and the HTTP APIs (CONTRACT §5, §7).

``/notify/poll/`` and ``/notify/stream/`` are Channels consumers routed ahead of Django
(``notify.routing``); any other path under ``/notify/`` that matches no route here
answers ``404 not_found`` as JSON.
"""

from django.urls import path, re_path

from . import api_push, api_views, views

app_name = "notify"

urlpatterns = [
    path("", views.inbox_page, name="inbox"),
    path("notify/api/notifications/", api_views.notifications, name="api-notifications"),
    path("notify/api/notifications/unread-count/", api_views.unread, name="api-unread-count"),
    path("notify/api/notifications/read/", api_views.mark_read, name="api-read"),
    path("notify/api/send/", api_views.send, name="api-send"),
    path("notify/api/announce/", api_views.announce, name="api-announce"),
    # Delivery receipts, Web Push and preferences (issue 14; notify.api_push).
    path("notify/api/notifications/ack/", api_push.ack, name="api-ack"),
    path("notify/api/push-subscriptions/", api_push.push_subscriptions, name="api-push-subscriptions"),
    path("notify/api/preferences/", api_push.preferences_api, name="api-preferences"),
    path("notify/preferences/", api_push.preferences_page, name="preferences"),
    path("notify/sw.js", api_push.service_worker, name="service-worker"),
    re_path(r"^notify(?:/.*)?$", api_views.not_found),
]
