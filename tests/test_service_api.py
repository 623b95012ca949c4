"""Service API ``POST /notify/api/send/`` and ``POST /notify/api/announce/`` (docs/protocol.md §5)."""

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from notify.models import Announcement, ApiToken, Entry, Notification

SEND = "/notify/api/send/"
ANNOUNCE = "/notify/api/announce/"


@pytest.fixture
def service(service_key):
    """A test client using a service key; CSRF is enforced (and must not apply)."""
    return Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {service_key}")


def post(client, path, body, **extra):
    return client.post(path, json.dumps(body) if not isinstance(body, (str, bytes)) else body,
                       content_type="application/json", **extra)


def assert_error(response, status, code, name=None):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    if name is not None:
        assert error["message"].startswith(name), error["message"]
    return error


# send/


def test_send_creates_one_per_distinct_recipient_in_order(user, other_user, service):
    response = post(service, SEND, {"recipients": ["bob", user.pk, other_user.pk, "alice"], "title": "Hi",
                                    "body": "b", "kind": "billing.paid", "level": "success", "url": "/x",
                                    "data": {"n": 1}})
    assert response.status_code == 201
    ids = response.json()["ids"]
    assert len(ids) == 2
    rows = {n.recipient_id: n for n in Notification.objects.filter(pk__in=ids)}
    assert [rows[other_user.pk].pk, rows[user.pk].pk] == ids
    row = rows[user.pk]
    assert (row.title, row.body, row.kind, row.level, row.url, row.data) == ("Hi", "b", "billing.paid", "success",
                                                                                "/x", {"n": 1})


def test_send_defaults_match_the_python_api(user, service):
    ids = post(service, SEND, {"recipients": [user.pk], "title": "Hi"}).json()["ids"]
    row = Notification.objects.get(pk=ids[0])
    assert (row.body, row.kind, row.level, row.url, row.data, row.dedupe_key) == ("", "message", "info", "", {}, None)


def test_send_with_dedupe_key_answers_200_with_the_same_ids(user, other_user, service):
    body = {"recipients": [user.pk, other_user.pk], "title": "Invoice", "dedupe_key": "inv-1"}
    first = post(service, SEND, body)
    again = post(service, SEND, body)
    assert first.status_code == 201 and again.status_code == 200
    assert first.json() == again.json()
    assert Notification.objects.count() == 2
    partly = post(service, SEND, {**body, "recipients": [user.pk, "carol"]})
    assert_error(partly, 400, "unknown_recipient")


def test_send_201_when_some_were_new(user, make_user, service):
    carol = make_user("carol")
    first = post(service, SEND, {"recipients": [user.pk], "title": "x", "dedupe_key": "k"}).json()["ids"]
    response = post(service, SEND, {"recipients": [user.pk, carol.pk], "title": "x", "dedupe_key": "k"})
    assert response.status_code == 201
    assert response.json()["ids"][0] == first[0]


def test_unknown_recipient_stores_nothing_for_anyone(user, service):
    for recipients in ([user.pk, "nobody"], [user.pk, 999999]):
        assert_error(post(service, SEND, {"recipients": recipients, "title": "x"}), 400, "unknown_recipient")
    assert Entry.objects.count() == 0


@pytest.mark.parametrize(
    "body, name",
    [
        ({"title": "x"}, "recipients"),
        ({"recipients": [], "title": "x"}, "recipients"),
        ({"recipients": "alice", "title": "x"}, "recipients"),
        ({"recipients": [True], "title": "x"}, "recipients"),
        ({"recipients": [{"id": 1}], "title": "x"}, "recipients"),
        ({"recipients": ["alice"]}, "title"),
        ({"recipients": ["alice"], "title": ""}, "title"),
        ({"recipients": ["alice"], "title": 5}, "title"),
        ({"recipients": ["alice"], "title": "x" * 201}, "title"),
        ({"recipients": ["alice"], "title": "x", "body": None}, "body"),
        ({"recipients": ["alice"], "title": "x", "kind": "Not A Slug"}, "kind"),
        ({"recipients": ["alice"], "title": "x", "kind": "k" * 65}, "kind"),
        ({"recipients": ["alice"], "title": "x", "level": "fatal"}, "level"),
        ({"recipients": ["alice"], "title": "x", "url": "javascript:alert(1)"}, "url"),
        ({"recipients": ["alice"], "title": "x", "data": [1]}, "data"),
        ({"recipients": ["alice"], "title": "x", "data": {"s": "é" * 4200}}, "data"),
        ({"recipients": ["alice"], "title": "x", "dedupe_key": ""}, "dedupe_key"),
        ({"recipients": ["alice"], "title": "x", "colour": "red"}, "colour"),
        ([], "body"),
    ],
)
def test_send_bad_fields_are_400_naming_the_field(user, service, body, name):
    assert_error(post(service, SEND, body), 400, "invalid_parameter", name)
    assert Entry.objects.count() == 0


def test_data_limit_is_8_kib_of_compact_utf8_json(user, service):
    fits = {"s": "x" * (8 * 1024 - len('{"s":""}'))}
    assert post(service, SEND, {"recipients": [user.pk], "title": "x", "data": fits}).status_code == 201
    over = {"s": "x" * (8 * 1024 - len('{"s":""}') + 1)}
    assert_error(post(service, SEND, {"recipients": [user.pk], "title": "x", "data": over}), 400,
                 "invalid_parameter", "data")


def test_invalid_json_is_400(service):
    assert_error(post(service, SEND, "{"), 400, "invalid_parameter", "body")


def test_body_over_64_kib_is_413(user, service):
    body = json.dumps({"recipients": [user.pk], "title": "x", "body": "y" * (64 * 1024)})
    assert_error(post(service, SEND, body), 413, "payload_too_large")
    assert Entry.objects.count() == 0


# announce/


def test_announce_for_everyone(user, service):
    response = post(service, ANNOUNCE, {"title": "Maintenance"})
    assert response.status_code == 201
    announcement = Announcement.objects.get(pk=response.json()["id"])
    assert (announcement.title, announcement.level, announcement.audience_group, announcement.expires_at) == (
        "Maintenance", "info", None, None)


def test_announce_with_every_field(user, service):
    group = Group.objects.create(name="staff")
    expires = (timezone.now() + timedelta(days=1)).replace(microsecond=0)
    response = post(service, ANNOUNCE, {"title": "T", "body": "B", "level": "warning", "url": "https://e.org/",
                                        "group": "staff", "expires_at": expires.isoformat().replace("+00:00", "Z")})
    assert response.status_code == 201
    announcement = Announcement.objects.get(pk=response.json()["id"])
    assert (announcement.body, announcement.level, announcement.url) == ("B", "warning", "https://e.org/")
    assert announcement.audience_group == group and announcement.expires_at == expires


def test_announce_null_group_and_expiry(user, service):
    assert post(service, ANNOUNCE, {"title": "T", "group": None, "expires_at": None}).status_code == 201


@pytest.mark.parametrize(
    "body, name",
    [
        ({}, "title"),
        ({"title": ""}, "title"),
        ({"title": "T", "group": "nope"}, "group"),
        ({"title": "T", "group": 3}, "group"),
        ({"title": "T", "expires_at": "tomorrow"}, "expires_at"),
        ({"title": "T", "expires_at": 1893456000}, "expires_at"),
        ({"title": "T", "expires_at": "2030-01-01T00:00:00"}, "expires_at"),
        ({"title": "T", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"title": "T", "level": "loud"}, "level"),
        ({"title": "T", "kind": "x"}, "kind"),
        ({"title": "T", "audience": None}, "audience"),
    ],
)
def test_announce_bad_fields_are_400(service, body, name):
    assert_error(post(service, ANNOUNCE, body), 400, "invalid_parameter", name)
    assert Entry.objects.count() == 0


# Authentication, methods, limits


@pytest.mark.parametrize("path", [SEND, ANNOUNCE])
def test_personal_token_is_403_forbidden(user, token, path):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert_error(post(client, path, {"recipients": [user.pk], "title": "x"}), 403, "forbidden")
    assert Entry.objects.count() == 0


@pytest.mark.parametrize("path", [SEND, ANNOUNCE])
def test_session_is_403_forbidden(user, path):
    client = Client()
    client.force_login(user)
    assert_error(post(client, path, {"title": "x"}), 403, "forbidden")


@pytest.mark.parametrize("path", [SEND, ANNOUNCE])
def test_no_or_bad_or_revoked_credentials_are_401(service_key, path):
    assert_error(post(Client(), path, {"title": "x"}), 401, "not_authenticated")
    assert_error(post(Client(HTTP_AUTHORIZATION="Bearer nsk_wrong"), path, {"title": "x"}), 401, "not_authenticated")
    assert_error(post(Client(HTTP_AUTHORIZATION="Basic abc"), path, {"title": "x"}), 401, "not_authenticated")
    ApiToken.objects.update(revoked_at=timezone.now())
    assert_error(post(Client(HTTP_AUTHORIZATION=f"Bearer {service_key}"), path, {"title": "x"}), 401,
                 "not_authenticated")


@pytest.mark.parametrize("path", [SEND, ANNOUNCE])
def test_get_is_405(service, path):
    response = service.get(path)
    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "POST"


@pytest.fixture
def private_cache(settings, request):
    """A rate-limit cache of this test's own (the default cache may be a shared Redis)."""
    settings.CACHES = {**settings.CACHES, "ratelimit": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": request.node.name}}
    settings.RATELIMIT_USE_CACHE = "ratelimit"


@pytest.mark.parametrize("path", [SEND, ANNOUNCE])
def test_rate_limit_per_service_key_is_429_with_retry_after(user, service, settings, private_cache, path):
    settings.NOTIFY = {"SERVICE_RATE_LIMIT": "3/m"}
    body = {"recipients": [user.pk], "title": "x"} if path == SEND else {"title": "x"}
    for _ in range(3):
        assert post(service, path, body).status_code == 201
    response = post(service, path, body)
    assert_error(response, 429, "rate_limited")
    assert 1 <= int(response["Retry-After"]) <= 60
    other = Client(HTTP_AUTHORIZATION=f"Bearer {ApiToken.objects.issue(name='other', service=True)}")
    assert post(other, path, body).status_code == 201  # each key has its own budget


def test_send_and_announce_share_one_budget(user, service, settings, private_cache):
    settings.NOTIFY = {"SERVICE_RATE_LIMIT": "2/m"}
    assert post(service, SEND, {"recipients": [user.pk], "title": "x"}).status_code == 201
    assert post(service, ANNOUNCE, {"title": "x"}).status_code == 201
    assert_error(post(service, SEND, {"recipients": [user.pk], "title": "x"}), 429, "rate_limited")


def test_default_rate_is_600_a_minute(user, service, private_cache):
    from notify.conf import notify_settings

    assert notify_settings.SERVICE_RATE_LIMIT == "600/m"
