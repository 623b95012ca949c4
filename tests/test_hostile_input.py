"""Hostile input over HTTP (issue 10): every class the fuzz run found answers a 4xx with
docs/protocol.md §2's JSON error body naming the field, never a 500."""

import json

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from notify.models import ApiToken, Entry

SEND = "/notify/api/send/"
ANNOUNCE = "/notify/api/announce/"
READ = "/notify/api/notifications/read/"


@pytest.fixture
def service(service_key):
    return Client(HTTP_AUTHORIZATION=f"Bearer {service_key}")


@pytest.fixture
def api(token):
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def post(client, path, body):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(path, raw, content_type="application/json")


def assert_error(response, status, code, name=None):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    if name is not None:
        assert error["message"].startswith(name + ":"), error["message"]


NUL_SENDS = [
    ({"title": "a\u0000b"}, "title"),
    ({"title": "t", "body": "\u0000"}, "body"),
    ({"title": "t", "url": "/x\u0000"}, "url"),
    ({"title": "t", "dedupe_key": "k\u0000"}, "dedupe_key"),
    ({"title": "t", "data": {"k": "v\u0000"}}, "data"),
    ({"title": "t", "data": {"k\u0000": 1}}, "data"),
    ({"title": "t", "data": {"k": [{"deep": ["\u0000"]}]}}, "data"),
]


@pytest.mark.parametrize("fields,name", NUL_SENDS)
def test_nul_in_any_send_string_is_400(user, service, fields, name):
    assert_error(post(service, SEND, {"recipients": [user.pk], **fields}), 400, "invalid_parameter", name)
    assert not Entry.objects.exists()


def test_nul_in_a_recipient_name_is_400(user, service):
    assert_error(post(service, SEND, {"recipients": ["ali\u0000ce"], "title": "t"}), 400, "invalid_parameter",
                 "recipients")


@pytest.mark.parametrize("fields,name", [({"title": "a\u0000"}, "title"), ({"title": "t", "group": "g\u0000"}, "group"),
                                         ({"title": "t", "body": "\u0000"}, "body")])
def test_nul_in_announce_is_400(service, fields, name):
    Group.objects.create(name="g")
    assert_error(post(service, ANNOUNCE, fields), 400, "invalid_parameter", name)
    assert not Entry.objects.exists()


@pytest.mark.parametrize("surrogate", ["\\ud800", "\\udfff", "\\ud83d"])
@pytest.mark.parametrize("name", ["title", "url", "recipients", "body", "data"])
def test_lone_surrogate_is_400(user, service, surrogate, name):
    # A JSON escape is the only way to put a lone surrogate into a UTF-8 body.
    fields = {"recipients": ["alice"], "title": "t", "url": "/x", "body": "b", "data": {"k": "v"}}
    raw = json.dumps(fields)
    value = {"recipients": '"alice"', "data": '"v"'}.get(name, json.dumps(fields[name]))
    raw = raw.replace(value, value[:-1] + surrogate + '"', 1)
    assert_error(post(service, SEND, raw.encode()), 400, "invalid_parameter", name)


@pytest.mark.parametrize("path", [SEND, ANNOUNCE])
def test_deeply_nested_json_is_400(service, path):
    raw = b'{"title": "t", "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert_error(post(service, path, raw[:60_000]), 400, "invalid_parameter", "body")


def test_deeply_nested_read_body_is_400(api):
    assert_error(post(api, READ, b"[" * 50_000), 400, "invalid_parameter", "body")


def test_deep_but_parseable_data_is_400_not_500(user, service):
    # Deep enough for the JSON decoder, too deep to store and push safely.
    data = {"k": json.loads("[" * 900 + "]" * 900)}
    assert_error(post(service, SEND, {"recipients": [user.pk], "title": "t", "data": data}), 400,
                 "invalid_parameter", "data")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32", "utf-8-sig"])
def test_body_not_in_utf8_is_400(user, service, encoding):
    raw = json.dumps({"recipients": [user.pk], "title": "t"}).encode(encoding)
    assert_error(post(service, SEND, raw), 400, "invalid_parameter", "body")


@pytest.mark.parametrize("value", [{}, [], 1, "true", None, False])
def test_read_all_must_be_true(api, value):
    assert_error(post(api, READ, {"all": value}), 400, "invalid_parameter", "all")


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-23:59", "9999-12-31T23:59:59.999999-00:01",
                                   "0001-01-01T00:00:00+23:59"])
def test_expires_at_out_of_range_is_400(service, value):
    assert_error(post(service, ANNOUNCE, {"title": "t", "expires_at": value}), 400, "invalid_parameter",
                 "expires_at")


@pytest.mark.parametrize("path", ["/notify/api/notifications/unread-count/", "/notify/api/notifications/"])
@pytest.mark.parametrize("raw", ["\x80\x81\xff", "ntk_\u00e9", "\u00ff" * 300])
def test_non_ascii_bearer_token_is_401(transactional_db, path, raw):
    response = Client(HTTP_AUTHORIZATION=f"Bearer {raw}").get(path)
    assert_error(response, 401, "not_authenticated")


def test_token_hint_keeps_prefix_and_last_four(user):
    raw = ApiToken.objects.issue(user=user)
    token = ApiToken.objects.get()
    assert token.hint == raw[:4] + "…" + raw[-4:]
    assert raw[4:-4] not in str(token)
    key = ApiToken.objects.issue(name="billing", service=True)
    assert ApiToken.objects.get(kind="service").hint == "nsk_…" + key[-4:]
