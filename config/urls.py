"""URL configuration of the example site: the inbox at ``/``, Django's auth views and
admin, and notify mounted at ``notify/`` (``/notify/api/...``, ``/notify/poll/``,
``/notify/stream/``; docs/protocol.md §3 to §7)."""

from django.contrib import admin
from django.urls import include, path

from notify.views import inbox_page

urlpatterns = [
    path("", inbox_page, name="home"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("notify/", include("notify.urls")),
]
