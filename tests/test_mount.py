"""notify mounted by a host: URLs follow the URLconf, the ASGI application follows it
too, the page hands the client its URLs, and the system checks (issue 11)."""

import json
import re

import pytest
from channels.testing import ApplicationCommunicator, WebsocketCommunicator
from django.core.asgi import get_asgi_application
from django.core.management import call_command
from django.test import Client

from notify.asgi import get_application
from notify.checks import check_notify_settings, check_urls, check_user_model

from .streamhelpers import auth, http_scope


@pytest.fixture
def alerts(settings):
    """The host of tests/alerts_urls.py: notify at ``alerts/``, WebSocket at ``/ws/alerts/``."""
    settings.ROOT_URLCONF = "tests.alerts_urls"
    settings.NOTIFY = {"WEBSOCKET_PATH": "/ws/alerts/"}
    return get_application(get_asgi_application())


async def request(app, path, headers=None):
    """One GET through ``app``: ``(status, body bytes)``."""
    comm = ApplicationCommunicator(app, http_scope(path, headers=headers))
    await comm.send_input({"type": "http.request", "body": b""})
    start = await comm.receive_output(3)
    body = b""
    while True:
        message = await comm.receive_output(3)
        body += message.get("body", b"")
        if not message.get("more_body"):
            return start["status"], body


@pytest.mark.django_db(transaction=True)
async def test_long_poll_and_sse_are_served_where_the_urlconf_mounts_notify(alerts, user, token, channel_layer):
    status, body = await request(alerts, "/alerts/poll/?timeout=0", auth(token))
    assert status == 200
    assert json.loads(body) == {"cursor": 0, "unread": 0, "notifications": []}
    status, body = await request(alerts, "/alerts/stream/?since=x", auth(token))
    assert (status, json.loads(body)["error"]["code"]) == (400, "invalid_parameter")  # the SSE consumer's check
    status, body = await request(alerts, "/notify/poll/", auth(token))
    assert status == 404  # nothing is at the old place


@pytest.mark.django_db(transaction=True)
async def test_other_paths_under_the_mount_are_django_and_json_404(alerts, user, token):
    status, body = await request(alerts, "/alerts/api/notifications/unread-count/", auth(token))
    assert (status, json.loads(body)) == (200, {"unread": 0})
    status, body = await request(alerts, "/alerts/nope/", auth(token))
    assert (status, json.loads(body)["error"]["code"]) == (404, "not_found")


@pytest.mark.django_db(transaction=True)
async def test_websocket_is_served_at_the_websocket_path_setting(alerts, user, token, channel_layer):
    ws = WebsocketCommunicator(alerts, "/ws/alerts/", headers=auth(token))
    assert (await ws.connect(timeout=3))[0]
    assert (await ws.receive_json_from(timeout=3))["type"] == "hello"
    await ws.disconnect()
    elsewhere = WebsocketCommunicator(alerts, "/ws/notify/", headers=auth(token))
    assert (await elsewhere.connect(timeout=3))[0] is False


def test_streams_that_reach_django_say_which_application_serves_them(db, settings):
    settings.ROOT_URLCONF = "tests.alerts_urls"
    response = Client().get("/alerts/poll/")
    assert response.status_code == 404
    assert "get_application" in response.json()["error"]["message"]


def test_the_inbox_page_hands_the_client_the_reversed_urls(make_user, settings):
    settings.ROOT_URLCONF = "tests.alerts_urls"
    settings.NOTIFY = {"WEBSOCKET_PATH": "/ws/alerts/"}
    settings.LOGIN_URL = "/signin/"
    client = Client()
    assert client.get("/alerts/").url == "/signin/?next=/alerts/"
    client.force_login(make_user("carol"))
    page = client.get("/alerts/").content.decode()
    config = json.loads(re.search(r'<script id="notify-config" type="application/json">(.*?)</script>', page).group(1))
    assert config["urls"] == {
        "websocket": "/ws/alerts/", "stream": "/alerts/stream/", "poll": "/alerts/poll/",
        "read": "/alerts/api/notifications/read/", "ack": "/alerts/api/notifications/ack/",
        "notifications": "/alerts/api/notifications/",
        "unreadCount": "/alerts/api/notifications/unread-count/",
    }
    assert 'data-login-url="/signin/?next=/alerts/"' in page
    assert "/accounts/" not in page and "/admin/" not in page  # this host has neither


def test_the_example_site_keeps_its_urls(make_user):
    client = Client()
    assert client.get("/").url == "/accounts/login/?next=/"
    client.force_login(make_user("dave", is_staff=True))
    page = client.get("/").content.decode()
    assert '"poll": "/notify/poll/"' in page and '"websocket": "/ws/notify/"' in page
    assert 'href="/admin/"' in page and 'action="/accounts/logout/"' in page
    assert client.get("/notify/").status_code == 200  # the inbox, where notify.urls is mounted


def test_nothing_under_static_names_a_path():
    from pathlib import Path

    import notify

    static = Path(notify.__file__).parent / "static" / "notify"
    for script in static.glob("*.js"):
        text = script.read_text()
        for path in ("/notify/", "/ws/", "/accounts/", "/admin/"):
            assert path not in text, f"{script.name} names {path}"


def test_checks_report_a_user_model_without_the_fields_notify_reads(monkeypatch):
    import django.contrib.auth

    assert check_user_model(None) == []

    class Bare:  # a stand-in model: only the meta lookups the check makes
        class _meta:
            label = "accounts.Bare"

            @staticmethod
            def get_field(name):
                from django.core.exceptions import FieldDoesNotExist

                if name in ("date_joined", "groups"):
                    raise FieldDoesNotExist(name)

    monkeypatch.setattr(django.contrib.auth, "get_user_model", lambda: Bare)
    problems = check_user_model(None)
    assert [p.id for p in problems] == ["notify.E002", "notify.E002"]
    assert "'date_joined'" in problems[0].msg and "'groups'" in problems[1].msg


def test_checks_report_bad_settings_and_a_missing_mount(settings):
    settings.NOTIFY = {"WEBSOCKET_PATH": "ws/notify"}
    settings.CHANNEL_LAYERS = {}
    assert sorted(p.id for p in check_notify_settings(None)) == ["notify.E003", "notify.E004"]
    assert check_urls(None) == []
    settings.ROOT_URLCONF = "tests.nothing_urls"
    assert [p.id for p in check_urls(None)] == ["notify.W002"]


def test_check_command_is_clean_for_the_example_site():
    call_command("check")
