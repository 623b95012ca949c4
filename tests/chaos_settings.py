"""Settings for the chaos test's daphne processes (tests/test_chaos.py).

- ``HEARTBEAT_SECONDS`` 1: an SSE client reading with a blocking library wakes at least
  every second (a ``: ping``), so it can end its session on time.
- ``BACKLOG_LIMIT`` 40: a chain that starts late with ``since=0`` gets ``reset`` and
  must re-read, so that path is exercised too.
- ``SERVICE_RATE_LIMIT``: the writers make more than 600 requests a minute.
"""

from config.settings import *  # noqa: F401,F403
from config.settings import NOTIFY as _NOTIFY

NOTIFY = {**_NOTIFY, "HEARTBEAT_SECONDS": 1, "BACKLOG_LIMIT": 40, "SERVICE_RATE_LIMIT": "100000/m"}
