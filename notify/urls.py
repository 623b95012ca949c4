"""Django URL routes of notify: the inbox page and the HTTP APIs (CONTRACT §5, §7).

``/notify/poll/`` and ``/notify/stream/`` are Channels consumers routed ahead of Django
(``notify.routing``); any other path under ``/notify/`` that matches no route here
answers ``404 not_found`` as JSON.
"""

from django.urls import path, re_path

from . import views
from .http import api, errors

app_name = "notify"

urlpatterns = [
    path("", views.inbox_page, name="inbox"),
    path("notify/api/", api.urls()),
    re_path(r"^notify(?:/.*)?$", errors.not_found),
]
