"""Settings for the slow-client test: a small per-connection send buffer."""

from config.settings import *  # noqa: F401,F403
from config.settings import NOTIFY as _NOTIFY

NOTIFY = {**_NOTIFY, "MAX_SEND_BUFFER_BYTES": 64 * 1024, "SERVICE_RATE_LIMIT": "100000/m"}
