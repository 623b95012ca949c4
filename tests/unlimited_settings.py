"""Settings for tests that drive the service API hard (schemathesis): no rate limit in
the way of what they test."""

from config.settings import *  # noqa: F401,F403
from config.settings import NOTIFY

NOTIFY = {**NOTIFY, "SERVICE_RATE_LIMIT": "100000/m", "CLIENT_RATE_LIMIT": "100000/m"}
