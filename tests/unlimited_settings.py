"""Settings for tests that drive the server hard from one address (schemathesis, the
drain test's 200 clients on 127.0.0.1): no rate limit or per-address handshake cap in
the way of what they test."""

from config.settings import *  # noqa: F401,F403
from config.settings import NOTIFY

NOTIFY = {**NOTIFY, "SERVICE_RATE_LIMIT": "100000/m", "CLIENT_RATE_LIMIT": "100000/m",
          "MAX_HANDSHAKES_PER_CLIENT": 0}
