"""Django URL routes of notify: the inbox page and the HTTP APIs (CONTRACT §5, §7)."""

from django.urls import path

from . import views

app_name = "notify"

urlpatterns = [
    path("", views.inbox_page, name="inbox"),
]
