"""Django app configuration for notify."""

from django.apps import AppConfig


class NotifyConfig(AppConfig):
    name = "notify"
    verbose_name = "Notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)
        from .realtime.daphne import install

        # Limits daphne must enforce before the application runs (issue 10).
        install()

        from .drain import install_under_daphne

        install_under_daphne()  # graceful drain on SIGTERM/SIGINT (notify/drain.py)

        from .webpush import config

        config()  # a bad Web Push setting stops daphne, check and every command here
