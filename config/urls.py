"""URL configuration of the example site: the inbox at ``/``, Django's auth views and
admin, and notify mounted at ``notify/`` (``/notify/api/...``, ``/notify/poll/``,
``/notify/stream/``; docs/protocol.md §3 to §7)."""

from django.contrib import admin
from django.urls import include, path

from notify.views import inbox_page

from .login import ThrottledLoginView, admin_login

urlpatterns = [
    path("", inbox_page, name="home"),
    path("admin/login/", admin_login),  # ahead of the admin's own, same name resolution
    path("admin/", admin.site.urls),
    # Before Django's auth URLs, so that "login" is the throttled view.
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("notify/", include("notify.urls")),
]
