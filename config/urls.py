"""URL configuration: the inbox page, Django's auth views and admin, notify's APIs."""

from django.contrib import admin
from django.urls import include, path

from .login import ThrottledLoginView, admin_login

urlpatterns = [
    path("admin/login/", admin_login),  # ahead of the admin's own, same name resolution
    path("admin/", admin.site.urls),
    # Before Django's auth URLs, so that "login" is the throttled view.
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("notify.urls")),
]
