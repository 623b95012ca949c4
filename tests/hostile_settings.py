"""Settings for the daphne limit tests: a short header timeout (seconds)."""

from config.settings import *  # noqa: F401,F403

NOTIFY = {"HEADER_TIMEOUT_SECONDS": 2}
