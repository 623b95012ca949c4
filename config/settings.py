"""Settings for the notify project, read from the environment (docs/protocol.md §8).

Environment variables (all optional; the defaults give the embedded setup):

- ``DJANGO_SECRET_KEY``: the secret key; a fixed development key when unset.
- ``DJANGO_DEBUG``: ``1`` or ``0`` (default ``0``).
- ``DJANGO_ALLOWED_HOSTS``: comma-separated host names (default
  ``localhost,127.0.0.1,[::1]``).
- ``DATABASE_URL``: e.g. ``postgres://postgres@127.0.0.1:5432/test``; unset means
  SQLite beside manage.py, in WAL mode with a busy timeout.
- ``REDIS_URL``: e.g. ``redis://127.0.0.1:6379/0``; unset means the in-memory channel
  layer (a single process).
- ``NOTIFY_DRAIN_SECONDS``: the graceful-drain window on SIGTERM (default 10).
- ``NOTIFY_METRICS_TOKEN``: Bearer token for ``/notify/metrics``; unset: 404.
- ``NOTIFY_LOG_FORMAT``: ``text`` (default) or ``json``; ``NOTIFY_LOG_LEVEL`` (INFO).
- ``NOTIFY_WEBPUSH_VAPID_PRIVATE_KEY`` (base64url P-256 scalar or PEM; unset: Web Push
  off), ``NOTIFY_WEBPUSH_VAPID_SUBJECT`` (``mailto:`` or https URL),
  ``NOTIFY_WEBPUSH_AFTER_SECONDS``, ``NOTIFY_WEBPUSH_TTL_SECONDS``,
  ``NOTIFY_WEBPUSH_ALLOW_INSECURE_ENDPOINTS`` (``1``, tests only): Web Push (notify/conf.py).
- ``DJANGO_SECURE``: ``1`` turns on the HTTPS-only settings (SSL redirect, HSTS,
  secure cookies); off by default because TLS usually ends at the proxy.
"""

import os
from pathlib import Path

import environ

from notify.logging import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

SECRET_KEY = env.str(
    "DJANGO_SECRET_KEY", default="notify-insecure-development-key-change-me-in-production"
)
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "notify",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "notify.metrics.ApiMetricsMiddleware",
]

ROOT_URLCONF = "config.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

# SQLite is the zero-setup default. WAL lets readers run while a management command
# writes; IMMEDIATE transactions take the write lock up front, so concurrent writers
# wait (up to ``timeout`` seconds) instead of failing with "database is locked".
_SQLITE_OPTIONS = {
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
}
DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
# No persistent connections by default: Django's ASGI handler runs each request in a
# thread of its own, and a persistent connection opened there outlives the thread
# (measured: a soak left 300 idle PostgreSQL connections behind one daphne process, and
# the server refused new clients). Django's docs say the same for ASGI. Put a pooler
# (PgBouncer) in front of PostgreSQL to save the connection cost.
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DJANGO_CONN_MAX_AGE", default=0))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Test databases are named per process, so test runs side by side do not drop each
# other's; a file (not memory) for SQLite, so daphne processes started by the
# end-to-end tests share it.
_TEST_SUFFIX = f"{os.getpid()}"
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(_SQLITE_OPTIONS)
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / f"test_db_{_TEST_SUFFIX}.sqlite3")}
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{_TEST_SUFFIX}"}

REDIS_URL = env.str("REDIS_URL", default="")

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 reads with a 5 s socket timeout by default, as long as
                # channels-redis' blocking receive (BZPOPMIN, 5 s): every idle receive
                # then failed and the hub re-subscribed and resynced every 5 s.
                "hosts": [{"address": REDIS_URL, "socket_timeout": 15}],
                # One hub channel per server process receives every push (see
                # notify/realtime/hub.py); give it room for bursts. The database cursor makes a
                # dropped push harmless, but a deep queue avoids the resync.
                "channel_capacity": {"notify.hub.*": 10_000},
                # Only hubs join groups, and each re-joins every 60 s
                # (notify.realtime.hub.GROUP_REFRESH_SECONDS): a process that died without
                # leaving drops out of the group after 5 minutes instead of a day.
                "group_expiry": 300,
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            # Only the hub channel (one per process) receives; let it queue bursts.
            # (InMemoryChannelLayer does not support channel_capacity patterns.)
            "CONFIG": {"capacity": 10_000},
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# WhiteNoise warns at every start while collectstatic has never run; an empty folder
# is enough (the finders serve the files until then).
STATIC_ROOT.mkdir(exist_ok=True)
# Serve app static files straight from the finders when collectstatic has not run,
# so plain `daphne config.asgi:application` works on a fresh checkout.
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGIN_URL = "/accounts/login/"
# Sign-in throttle (config/login.py): attempts per username and per client address,
# as django-ratelimit rates.
LOGIN_RATE_PER_USERNAME = env.str("DJANGO_LOGIN_RATE_PER_USERNAME", default="10/10m")
LOGIN_RATE_PER_ADDRESS = env.str("DJANGO_LOGIN_RATE_PER_ADDRESS", default="50/10m")
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# HTTPS-only settings are opt-in: TLS usually ends at the proxy (docs/protocol.md §8).
if env.bool("DJANGO_SECURE", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=3600)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# One stderr handler; NOTIFY_LOG_FORMAT=json makes every line a JSON object with the
# event's fields (notify/logging.py).
LOGGING = logging_config(
    env.str("NOTIFY_LOG_FORMAT", default="text"), env.str("NOTIFY_LOG_LEVEL", default="INFO")
)

# App settings: see notify/conf.py for every key, its unit and its default.
NOTIFY = {
    "DRAIN_SECONDS": env.float("NOTIFY_DRAIN_SECONDS", default=10),
    "METRICS_TOKEN": env.str("NOTIFY_METRICS_TOKEN", default="") or None,
}
# Web Push settings from the environment (checked when the app loads: a bad key or
# subject stops daphne, manage.py check and notify_escalate with a message).
for _name in ("WEBPUSH_VAPID_PRIVATE_KEY", "WEBPUSH_VAPID_SUBJECT", "WEBPUSH_AFTER_SECONDS",
              "WEBPUSH_TTL_SECONDS"):
    if os.environ.get(f"NOTIFY_{_name}"):
        NOTIFY[_name] = os.environ[f"NOTIFY_{_name}"]
if os.environ.get("NOTIFY_WEBPUSH_ALLOW_INSECURE_ENDPOINTS"):
    NOTIFY["WEBPUSH_ALLOW_INSECURE_ENDPOINTS"] = env.bool("NOTIFY_WEBPUSH_ALLOW_INSECURE_ENDPOINTS")
