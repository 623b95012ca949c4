"""Settings for notify under the bench: the project's settings with the service key's
rate limit raised (the send-API throughput bench makes thousands of requests a minute;
the default "600/m" would answer 429) and the connection caps lifted. Everything else is
the production configuration.

    DJANGO_SETTINGS_MODULE=bench.settings daphne config.asgi:application
"""

from config.settings import *  # noqa: F401,F403
from config.settings import NOTIFY as _NOTIFY

# The load generator opens thousands of connections for few users from one address:
# lift the per-user and per-address caps (issue 10), which would refuse them.
NOTIFY = {**_NOTIFY, "SERVICE_RATE_LIMIT": "100000/m", "MAX_CONNECTIONS_PER_USER": 1_000_000,
          "MAX_HANDSHAKES_PER_CLIENT": 0}
