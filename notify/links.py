"""The URLs notify hands to pages and browser clients, reversed from the URLconf.

Nothing under ``static/`` knows a path: pages render these (the ``notify_tags``
template tags) and the JS client reads them (docs/protocol.md §7).
"""

import functools
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.shortcuts import resolve_url
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.urls import NoReverseMatch, get_script_prefix, reverse

from .conf import notify_settings


@functools.cache
def mount_prefix() -> str:
    """Return the path where the URLconf mounted ``notify.urls`` (e.g. ``/notify/``):
    every HTTP answer under it is JSON (docs/protocol.md §2). Falls back to ``/notify/``
    when ``notify.urls`` is not mounted. Cached; dropped when ``ROOT_URLCONF`` changes."""
    try:
        return reverse("notify:inbox")
    except NoReverseMatch:
        return "/notify/"


@receiver(setting_changed)
def _forget_mount_prefix(*, setting: str, **kwargs: Any) -> None:
    if setting == "ROOT_URLCONF":
        mount_prefix.cache_clear()


def client_urls() -> dict[str, str]:
    """Return the URLs the JS client and the inbox page use, as absolute paths.

    Returns:
        ``{"websocket", "stream", "poll", "read", "ack", "notifications", "unreadCount"}``;
        ``websocket`` is ``NOTIFY["WEBSOCKET_PATH"]`` under the script prefix.
    Raises:
        NoReverseMatch: ``notify.urls`` is not in the URLconf (namespace ``notify``).
    """
    return {
        "websocket": get_script_prefix().rstrip("/") + notify_settings.WEBSOCKET_PATH,
        "stream": reverse("notify:stream"),
        "poll": reverse("notify:poll"),
        "read": reverse("notify:api-read"),
        "ack": reverse("notify:api-ack"),
        "notifications": reverse("notify:api-notifications"),
        "unreadCount": reverse("notify:api-unread-count"),
    }


def account_urls(next_path: str | None = None) -> dict[str, str | None]:
    """Return the account links of notify's pages.

    Args:
        next_path: where the login page should send the user back to, e.g. the
            current page's path; None for none.
    Returns:
        ``{"login", "logout", "admin"}``: ``login`` from ``settings.LOGIN_URL`` (with
        ``?next=`` when ``next_path`` is given); ``logout`` the URL named ``logout``
        (``django.contrib.auth.urls``) and ``admin`` the admin index (``admin:index``),
        each None when the URLconf has no such route.
    """
    login = redirect_to_login(next_path).url if next_path else resolve_url(settings.LOGIN_URL)
    return {"login": login, "logout": _reverse_or_none("logout"), "admin": _reverse_or_none("admin:index")}


def _reverse_or_none(name: str) -> str | None:
    try:
        return reverse(name)
    except NoReverseMatch:
        return None
