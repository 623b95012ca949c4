"""Shared fixtures: users, tokens, channel layer, and real daphne processes."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings

# Threads of the async ORM (database_sync_to_async) keep connections open for
# CONN_MAX_AGE; in tests they must close after each call, or PostgreSQL refuses to drop
# the test database at the end ("being accessed by other users").
django_settings.DATABASES["default"]["CONN_MAX_AGE"] = 0

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, reason: str):
    """Skip a test whose service is missing, except under CI=true, where it fails:
    CI must run every test."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required under CI=true: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def _close_stray_connections(django_db_setup, django_db_blocker):
    """At the end of the run, end the test database's other sessions (a thread of the
    async ORM, a daphne child) so that PostgreSQL can drop it."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture
def redis_url():
    """The REDIS_URL of a reachable Redis (skips without one, fails under CI)."""
    url = os.environ.get("REDIS_URL", "")
    need(bool(url), "REDIS_URL is not set")
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as exc:  # pragma: no cover - environment dependent
        need(False, f"Redis at {url} is unreachable: {exc}")
    return url


@pytest.fixture
def postgres():
    """Require that the tests run on PostgreSQL (DATABASE_URL)."""
    need(
        django_settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql",
        "DATABASE_URL does not point at PostgreSQL",
    )


@pytest.fixture
def channel_layer(settings):
    """An in-memory channel layer for the test (setting_changed resets channels' cache)."""
    from channels.layers import get_channel_layer

    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 10_000}}
    }
    return get_channel_layer()


@pytest.fixture
def make_user(transactional_db):
    """Factory: ``make_user("bob", password="...", **fields)`` creates a user."""
    from django.contrib.auth import get_user_model

    def make(username, password="pw-Secret-123", **fields):
        return get_user_model().objects.create_user(username=username, password=password, **fields)

    return make


@pytest.fixture
def user(make_user):
    return make_user("alice")


@pytest.fixture
def other_user(make_user):
    return make_user("bob")


@pytest.fixture
def token(user):
    """A raw personal API token of ``user``."""
    from notify.models import ApiToken

    return ApiToken.objects.issue(user=user, name="test")


@pytest.fixture
def service_key(transactional_db):
    """A raw service key."""
    from notify.models import ApiToken

    return ApiToken.objects.issue(name="billing", service=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url() -> str:
    """A DATABASE_URL for child processes that points at the test database."""
    db = django_settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    port = db.get("PORT") or 5432
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db.get('HOST') or '127.0.0.1'}:{port}/{db['NAME']}"


def child_env(redis_url: str | None = None, **extra) -> dict:
    """Environment for a child process (daphne or manage.py) sharing the test database."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=database_url(),
        DJANGO_ALLOWED_HOSTS="localhost,127.0.0.1",
        PYTHONUNBUFFERED="1",
    )
    env.pop("REDIS_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra)
    return env


class DaphneProcess:
    """A real ``daphne config.asgi:application`` on a free port; ``url`` and ``ws_url``."""

    def __init__(self, env: dict, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.env = env
        self.log_path = log_path
        self.proc = None
        self.start()

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port),
             "config.asgi:application"],
            cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daphne exited: {self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("daphne did not start listening in 30 s")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def daphne_factory(transactional_db, tmp_path):
    """Factory: ``daphne_factory(redis_url=None, **env)`` starts a daphne process that
    shares the test database; all are stopped at teardown."""
    started = []

    def start(redis_url=None, **extra):
        server = DaphneProcess(child_env(redis_url, **extra), tmp_path / f"daphne{len(started)}.log")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def manage(transactional_db):
    """Run ``python manage.py ...`` as a separate process against the test database.

    Returns a function ``manage(*args, redis_url=None) -> CompletedProcess``.
    """

    def run(*args, redis_url=None, check=False):
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=child_env(redis_url),
            capture_output=True, text=True, timeout=60, check=check,
        )

    return run


class RedisServer:
    """A throwaway ``redis-server`` on a free port, stoppable and restartable."""

    def __init__(self):
        self.binary = shutil.which("redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        import redis

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping()
                return
            except Exception:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def own_redis():
    """A redis-server of the test's own (to stop and restart), on a free port."""
    need(shutil.which("redis-server") is not None, "redis-server is not installed")
    server = RedisServer()
    server.start()
    yield server
    server.stop()


def chromium_paths():
    """Return (chromium, chromedriver) paths, or None where they are not installed."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None
