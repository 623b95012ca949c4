"""Settings for the baseline: a plain Channels ``group_send`` consumer (bench only).

Environment:

- ``BASELINE_LAYER``: ``memory`` (default, one process), ``redis`` (channels-redis
  ``RedisChannelLayer``) or ``redis-pubsub`` (``RedisPubSubChannelLayer``).
- ``BASELINE_REDIS_URL``: default ``redis://127.0.0.1:6379/15``.
- ``BASELINE_CAPACITY``: per-channel capacity; unset keeps the layer's default (100),
  which is what a plain Channels project runs with.
"""

import os

SECRET_KEY = "bench-baseline-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["channels"]
DATABASES = {}
USE_TZ = True
ASGI_APPLICATION = "bench.baseline.asgi.application"
LOGGING_CONFIG = None

_layer = os.environ.get("BASELINE_LAYER", "memory")
_redis = os.environ.get("BASELINE_REDIS_URL", "redis://127.0.0.1:6379/15")
_config = {}
if os.environ.get("BASELINE_CAPACITY"):
    _config["capacity"] = int(os.environ["BASELINE_CAPACITY"])

if _layer == "memory":
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": _config}}
elif _layer == "redis":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [_redis], **_config},
        }
    }
elif _layer == "redis-pubsub":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [_redis]},
        }
    }
else:  # pragma: no cover - configuration error
    raise RuntimeError(f"BASELINE_LAYER must be memory, redis or redis-pubsub, not {_layer!r}")
