"""notify as a new user adds it (issue 11): build the wheel, install it into a fresh
venv, write a small host project (an email-login user model, its own base template,
notify mounted at ``alerts/``, ``notify.asgi.get_application``), start it with daphne
and drive it with real clients.

Slow (a wheel build and a ``pip install`` from the package index or pip's cache), so it
runs under CI=true, or locally with NOTIFY_TEST_INSTALL=1.
"""

import json
import os
import queue
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import requests

from .conftest import IN_CI, ROOT, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.install]

WAIT = 20  # seconds any single network expectation may take at most
PASSWORD = "pw-Secret-123"

HOST_FILES = {
    "manage.py": """
        import os
        import sys

        if __name__ == "__main__":
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "host.settings")
            from django.core.management import execute_from_command_line

            execute_from_command_line(sys.argv)
    """,
    "host/__init__.py": "",
    "host/settings.py": """
        from pathlib import Path

        BASE_DIR = Path(__file__).resolve().parent.parent
        SECRET_KEY = "host-test-key"
        DEBUG = True
        ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
        INSTALLED_APPS = [
            "daphne",
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django.contrib.staticfiles",
            "accounts",
            "channels",
            "notify",
        ]
        MIDDLEWARE = [
            "django.middleware.security.SecurityMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ]
        ROOT_URLCONF = "host.urls"
        TEMPLATES = [{
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "DIRS": [BASE_DIR / "templates"],
            "APP_DIRS": True,
            "OPTIONS": {"context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]},
        }]
        ASGI_APPLICATION = "host.asgi.application"
        DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}
        CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
        AUTH_USER_MODEL = "accounts.Member"
        DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
        USE_TZ = True
        STATIC_URL = "static/"
        LOGIN_URL = "/signin/"
        LOGIN_REDIRECT_URL = "/alerts/"
        NOTIFY = {"HEARTBEAT_SECONDS": 5}
    """,
    "host/urls.py": """
        from django.contrib import admin
        from django.contrib.auth.views import LoginView
        from django.contrib.staticfiles.urls import staticfiles_urlpatterns
        from django.urls import include, path

        urlpatterns = [
            path("admin/", admin.site.urls),
            path("signin/", LoginView.as_view(template_name="signin.html"), name="login"),
            path("alerts/", include("notify.urls")),
        ] + staticfiles_urlpatterns()
    """,
    "host/asgi.py": """
        import os

        from django.core.asgi import get_asgi_application

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "host.settings")
        django_asgi_app = get_asgi_application()

        from notify.asgi import get_application  # noqa: E402

        application = get_application(django_asgi_app)
    """,
    "accounts/__init__.py": "",
    "accounts/models.py": """
        from django.contrib.auth.base_user import BaseUserManager
        from django.contrib.auth.models import AbstractUser
        from django.db import models


        class MemberManager(BaseUserManager):
            use_in_migrations = True

            def create_user(self, email, password=None, **fields):
                user = self.model(email=self.normalize_email(email), **fields)
                user.set_password(password)
                user.save(using=self._db)
                return user

            def create_superuser(self, email, password=None, **fields):
                return self.create_user(email, password, is_staff=True, is_superuser=True, **fields)


        class Member(AbstractUser):
            username = None
            email = models.EmailField(unique=True)
            USERNAME_FIELD = "email"
            REQUIRED_FIELDS = []
            objects = MemberManager()
    """,
    "templates/base.html": """
        <!doctype html>
        <html><head><title>{% block page_title %}Acme{% endblock %}</title>{% block extra_head %}{% endblock %}</head>
        <body><header id="acme-header">Acme intranet</header>
        {% block body %}{% endblock %}
        {% block body_scripts %}{% endblock %}
        </body></html>
    """,
    "templates/notify/base.html": """
        {% extends "base.html" %}
        {% block page_title %}{% block title %}{% endblock %}{% endblock %}
        {% block extra_head %}{% block head %}{% endblock %}{% endblock %}
        {% block body %}<main>{% block content %}{% endblock %}</main>{% endblock %}
        {% block body_scripts %}{% block scripts %}{% endblock %}{% endblock %}
    """,
    "templates/signin.html": """
        <form method="post">{% csrf_token %}{{ form.as_p }}<button>Sign in</button></form>
    """,
}


def run(command, *, cwd, env=None, timeout):
    """Run a command; fail the test with its output when it fails."""
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """Build the wheel, install it into a fresh venv; return ``(venv python, wheel)``."""
    if not (IN_CI or os.environ.get("NOTIFY_TEST_INSTALL")):
        pytest.skip("slow: builds and installs the wheel; runs under CI=true or NOTIFY_TEST_INSTALL=1")
    base = tmp_path_factory.mktemp("install")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE", "VIRTUAL_ENV")}
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(base / "dist"), str(ROOT)],
        cwd=base, env=env, timeout=300)
    (wheel,) = (base / "dist").glob("*.whl")
    run([sys.executable, "-m", "venv", str(base / "venv")], cwd=base, env=env, timeout=120)
    python = base / "venv" / "bin" / "python"
    run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel), "websockets"],
        cwd=base, env=env, timeout=600)
    return python, wheel


def test_the_wheel_holds_the_app_with_templates_static_files_and_migrations(installed):
    import zipfile

    _, wheel = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("notify/templates/notify/base.html", "notify/templates/notify/inbox.html",
                 "notify/static/notify/client.js", "notify/migrations/0001_initial.py",
                 "notify/templatetags/notify_tags.py", "notify/asgi.py"):
        assert name in names
    assert not any(name.startswith(("config/", "tests/", "bench/")) for name in names)
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [line for line in zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert not any(re.search(r"environ|whitenoise|psycopg|pytest", line, re.I) for line in requires), requires


@pytest.fixture(scope="module")
def host(installed, tmp_path_factory):
    """The host project, migrated, with a staff member and a member; its daphne server.

    Yields a dict: ``url``, ``ws_url``, ``manage`` (runs ``manage.py`` in the venv),
    ``python`` (the venv's).
    """
    python, _ = installed
    folder = tmp_path_factory.mktemp("host")
    for name, text in HOST_FILES.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE", "VIRTUAL_ENV",
                                                             "DATABASE_URL", "REDIS_URL")}
    env.update(PYTHONUNBUFFERED="1", DJANGO_SUPERUSER_PASSWORD=PASSWORD)

    def manage(*args, timeout=120):
        return run([str(python), "manage.py", *args], cwd=folder, env=env, timeout=timeout)

    where = run([str(python), "-c", "import notify; print(notify.__file__)"], cwd=folder / "host", env=env, timeout=60)
    assert "site-packages" in where.stdout  # the installed wheel, not this checkout
    manage("makemigrations", "accounts")
    manage("migrate", "-v", "0")
    manage("createsuperuser", "--noinput", "--email", "boss@example.com")
    manage("shell", "-c", f"from accounts.models import Member; Member.objects.create_user('bob@example.com', {PASSWORD!r})")
    port = free_port()
    log = open(folder / "daphne.log", "wb")
    proc = subprocess.Popen([str(python), "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "host.asgi:application"],
                            cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, (folder / "daphne.log").read_text()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "daphne did not listen in 30 s"
            time.sleep(0.1)
    yield {"url": f"http://127.0.0.1:{port}", "ws_url": f"ws://127.0.0.1:{port}", "manage": manage,
           "python": python, "log": folder / "daphne.log"}
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def sign_in(host, email) -> requests.Session:
    """Sign in through the host's own login page; return the session."""
    session = requests.Session()
    page = session.get(f"{host['url']}/signin/", timeout=WAIT)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    answer = session.post(f"{host['url']}/signin/", timeout=WAIT, allow_redirects=False,
                          data={"csrfmiddlewaretoken": csrf, "username": email, "password": PASSWORD})
    assert answer.status_code == 302, answer.text[:500]
    return session


def last_line(result) -> str:
    return result.stdout.strip().splitlines()[-1]


def test_the_inbox_page_renders_in_the_host_layout_with_its_urls(host):
    session = sign_in(host, "bob@example.com")
    assert requests.get(f"{host['url']}/alerts/", allow_redirects=False, timeout=WAIT).headers["Location"] == (
        "/signin/?next=/alerts/")
    page = session.get(f"{host['url']}/alerts/", timeout=WAIT)
    assert page.status_code == 200
    assert 'id="acme-header"' in page.text and 'id="notification-list"' in page.text
    config = json.loads(re.search(r'<script id="notify-config" type="application/json">(.*?)</script>',
                                  page.text).group(1))
    assert config["urls"]["poll"] == "/alerts/poll/" and config["urls"]["websocket"] == "/ws/notify/"
    for url in re.findall(r'src="([^"]+\.js)"', page.text):
        assert session.get(f"{host['url']}{url}", timeout=WAIT).status_code == 200  # static files from the wheel


def test_a_send_naming_the_recipient_by_email_reaches_websocket_sse_and_long_poll(host):
    from websockets.sync.client import connect

    manage = host["manage"]
    token = last_line(manage("notify_token", "bob@example.com"))
    key = last_line(manage("notify_token", "--service", "billing"))
    bearer = {"Authorization": f"Bearer {token}"}
    url = host["url"]

    # Long-poll: the current cursor, then a held request.
    cursor = requests.get(f"{url}/alerts/poll/", headers=bearer, timeout=WAIT).json()["cursor"]
    polled = queue.Queue()
    threading.Thread(target=lambda: polled.put(requests.get(
        f"{url}/alerts/poll/?since={cursor}&timeout=15", headers=bearer, timeout=WAIT + 15)), daemon=True).start()

    # SSE with the browser's session cookie.
    session = sign_in(host, "bob@example.com")
    sse = session.get(f"{url}/alerts/stream/", stream=True, timeout=WAIT)
    assert sse.status_code == 200 and sse.headers["Content-Type"].startswith("text/event-stream")
    events = queue.Queue()

    def read_sse():
        event = {}
        try:
            for line in sse.iter_lines(decode_unicode=True):
                if not line:
                    events.put(event)
                    event = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    event[name] = value.strip()
        except (requests.RequestException, AttributeError, ValueError):
            pass  # the test closed the response

    threading.Thread(target=read_sse, daemon=True).start()
    assert events.get(timeout=WAIT)["event"] == "hello"

    with connect(f"{host['ws_url']}/ws/notify/", additional_headers=bearer, subprotocols=["notify.v1"],
                 open_timeout=WAIT) as ws:
        assert json.loads(ws.recv(timeout=WAIT))["type"] == "hello"
        # Each hello came after its link registered; the poll asks with since, so it
        # gets the item whenever its request arrives.
        sent = requests.post(f"{url}/alerts/api/send/", timeout=WAIT, headers={"Authorization": f"Bearer {key}"},
                             json={"recipients": ["bob@example.com"], "title": "Invoice paid"})
        assert sent.status_code == 201, sent.text
        (item_id,) = sent.json()["ids"]
        frame = json.loads(ws.recv(timeout=WAIT))
        while frame["type"] == "ping":
            frame = json.loads(ws.recv(timeout=WAIT))
        assert frame["type"] == "notification" and frame["notification"]["id"] == item_id

    event = events.get(timeout=WAIT)
    while event.get("event") != "notification":
        event = events.get(timeout=WAIT)
    assert json.loads(event["data"])["title"] == "Invoice paid" and event["id"] == str(item_id)
    sse.close()
    answer = polled.get(timeout=WAIT + 15)
    assert answer.status_code == 200
    assert [item["id"] for item in answer.json()["notifications"]] == [item_id]


def test_commands_admin_and_checks_work_with_the_email_login_model(host):
    manage = host["manage"]
    (item_id,) = manage("notify_send", "--to", "bob@example.com", "--title", "From a shell").stdout.split()
    assert manage("notify_announce", "--title", "Hello all").stdout.strip().isdigit()
    staff = sign_in(host, "boss@example.com")
    found = staff.get(f"{host['url']}/admin/notify/notification/?q=bob@example.com", timeout=WAIT)
    assert found.status_code == 200 and "From a shell" in found.text
    assert staff.get(f"{host['url']}/admin/notify/announcement/add/", timeout=WAIT).status_code == 200
    check = manage("check")
    assert "notify." not in check.stdout + check.stderr
    assert "Traceback" not in host["log"].read_text(errors="replace")


def test_the_openapi_document_is_served_under_the_mount(host):
    answer = requests.get(f"{host['url']}/alerts/api/openapi.json", timeout=WAIT)
    assert answer.status_code == 200
    document = answer.json()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    for path in ("/alerts/api/notifications/", "/alerts/api/notifications/unread-count/",
                 "/alerts/api/notifications/read/", "/alerts/api/send/", "/alerts/api/announce/"):
        assert path in paths, sorted(paths)
    assert "401" in paths["/alerts/api/send/"]["post"]["responses"]
