"""System checks for notify's settings."""

from django.conf import settings
from django.core.checks import Error, Warning, register

from .conf import DEFAULTS


@register()
def check_notify_settings(app_configs, **kwargs):
    """notify.E001: an unknown key in ``NOTIFY``."""
    return [
        Error(f"Unknown NOTIFY setting {key!r}.", hint="See notify/conf.py.", id="notify.E001")
        for key in getattr(settings, "NOTIFY", {})
        if key not in DEFAULTS
    ]


@register(deploy=True)
def check_channel_layer(app_configs, **kwargs):
    """notify.W001 (with ``check --deploy``): the in-memory channel layer carries
    pushes within one process only."""
    problems = []
    backend = settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", "")
    if not settings.DEBUG and backend.endswith("InMemoryChannelLayer"):
        problems.append(
            Warning(
                "The in-memory channel layer carries pushes within one process only.",
                hint="Set REDIS_URL to run several server processes.",
                id="notify.W001",
            )
        )
    return problems
