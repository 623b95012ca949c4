"""System checks for notify's settings, user model and URLconf."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import FieldDoesNotExist

from .conf import DEFAULTS, notify_settings

# Fields of the user model notify reads: an announcement reaches active users
# (``is_active``) who joined before it (``date_joined``), narrowed to a group's members
# (``groups``); AbstractUser has all three (docs/protocol.md §1).
USER_FIELDS = ("is_active", "date_joined", "groups")


@register()
def check_notify_settings(app_configs, **kwargs):
    """notify.E001: an unknown key in ``NOTIFY``; notify.E003: a ``WEBSOCKET_PATH``
    that does not start and end with ``/``; notify.E004: no channel layer under
    ``CHANNEL_LAYER_ALIAS``."""
    problems = [
        Error(f"Unknown NOTIFY setting {key!r}.", hint="See notify/conf.py.", id="notify.E001")
        for key in getattr(settings, "NOTIFY", {})
        if key not in DEFAULTS
    ]
    alias = notify_settings.CHANNEL_LAYER_ALIAS
    if alias not in getattr(settings, "CHANNEL_LAYERS", {}):
        problems.append(
            Error(
                f"CHANNEL_LAYERS has no {alias!r} layer: notify pushes through it.",
                hint='For one process: {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}; '
                "for several, channels_redis.core.RedisChannelLayer.",
                id="notify.E004",
            )
        )
    path = notify_settings.WEBSOCKET_PATH
    if not (isinstance(path, str) and path.startswith("/") and path.endswith("/")):
        problems.append(
            Error(
                f"NOTIFY['WEBSOCKET_PATH'] must start and end with '/', not {path!r}.",
                hint='For example "/ws/notify/".',
                id="notify.E003",
            )
        )
    return problems


@register(Tags.models)
def check_user_model(app_configs, **kwargs):
    """notify.E002: the user model lacks a field notify needs (``USER_FIELDS``)."""
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    problems = []
    for name in USER_FIELDS:
        try:
            user_model._meta.get_field(name)
        except FieldDoesNotExist:
            problems.append(
                Error(
                    f"notify needs the user model {user_model._meta.label} to have a {name!r} field.",
                    hint="Build the user model on django.contrib.auth.models.AbstractUser "
                    "(or add is_active, date_joined and PermissionsMixin's groups).",
                    obj=user_model,
                    id="notify.E002",
                )
            )
    return problems


@register(Tags.urls)
def check_urls(app_configs, **kwargs):
    """notify.W002: ``notify.urls`` is not in the URLconf (namespace ``notify``), so
    the inbox, the APIs, long-poll and SSE have no URL."""
    from django.urls import NoReverseMatch, reverse

    try:
        reverse("notify:poll")
    except NoReverseMatch:
        return [
            Warning(
                "notify.urls is not in the URLconf.",
                hint='Add path("alerts/", include("notify.urls")) (any prefix) to your urls.py.',
                id="notify.W002",
            )
        ]
    return []


@register(deploy=True)
def check_channel_layer(app_configs, **kwargs):
    """notify.W001 (with ``check --deploy``): the in-memory channel layer carries
    pushes within one process only."""
    problems = []
    layers = getattr(settings, "CHANNEL_LAYERS", {})
    backend = layers.get(notify_settings.CHANNEL_LAYER_ALIAS, {}).get("BACKEND", "")
    if not settings.DEBUG and backend.endswith("InMemoryChannelLayer"):
        problems.append(
            Warning(
                "The in-memory channel layer carries pushes within one process only.",
                hint="Use channels_redis.core.RedisChannelLayer to run several server processes.",
                id="notify.W001",
            )
        )
    return problems
