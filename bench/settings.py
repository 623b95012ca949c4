"""Settings for notify under the bench: the project's settings with the service key's
rate limit raised (the send-API throughput bench makes thousands of requests a minute;
the default "600/m" would answer 429). Everything else is the production configuration.

    DJANGO_SETTINGS_MODULE=bench.settings daphne config.asgi:application
"""

from config.settings import *  # noqa: F401,F403
from config.settings import NOTIFY as _NOTIFY

NOTIFY = {**_NOTIFY, "SERVICE_RATE_LIMIT": "100000/m"}
