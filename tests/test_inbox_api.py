"""Inbox HTTP API under ``/notify/api/notifications/`` (docs/protocol.md §5), and JSON errors under /notify/."""

import json

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import Group
from django.test import AsyncClient, Client

from notify import services

from .streamhelpers import HttpClient, auth, wait_held

LIST = "/notify/api/notifications/"
COUNT = "/notify/api/notifications/unread-count/"
READ = "/notify/api/notifications/read/"


def bearer(token):
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def send(user, n=1, **fields):
    return [services.send(user, title=f"t{i}", **fields)[0][0].pk for i in range(n)]


def assert_error(response, status, code, name=None):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if name is not None:
        assert body["error"]["message"].startswith(name)
    return body


@pytest.fixture
def api(token):
    """A test client authenticated by the user's Bearer token, enforcing CSRF."""
    return Client(enforce_csrf_checks=True, **bearer(token))


@pytest.fixture
def browser(user):
    """A session-authenticated test client that enforces CSRF like a browser."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


# List


def test_list_is_newest_first_with_every_field(user, other_user, api):
    ids = send(user, 3, data={"x": 1}, url="/a", level="success", kind="k.1")
    send(other_user, 2)
    response = api.get(LIST)
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert [item["id"] for item in body["notifications"]] == ids[::-1]
    assert body["next_before"] is None
    item = body["notifications"][0]
    assert item == {
        "id": ids[2], "kind": "k.1", "title": "t2", "body": "", "level": "success", "url": "/a",
        "data": {"x": 1}, "created_at": item["created_at"], "read": False, "muted": False, "delivered": False,
    }
    assert item["created_at"].endswith("Z")


def test_pages_with_before_and_next_before(user, api):
    ids = send(user, 5)
    first = api.get(LIST, {"limit": 2}).json()
    assert [i["id"] for i in first["notifications"]] == [ids[4], ids[3]]
    assert first["next_before"] == ids[3]
    second = api.get(LIST, {"limit": 2, "before": first["next_before"]}).json()
    assert [i["id"] for i in second["notifications"]] == [ids[2], ids[1]]
    third = api.get(LIST, {"limit": 2, "before": second["next_before"]}).json()
    assert [i["id"] for i in third["notifications"]] == [ids[0]]
    assert third["next_before"] is None


def test_default_limit_is_50_and_max_200(user, api):
    send(user, 51)
    body = api.get(LIST).json()
    assert len(body["notifications"]) == 50 and body["next_before"] is not None
    assert len(api.get(LIST, {"limit": 200}).json()["notifications"]) == 51


def test_unread_filter_and_read_flags(user, api):
    ids = send(user, 3)
    services.mark_read(user, [ids[1]])
    everything = api.get(LIST).json()["notifications"]
    assert [i["read"] for i in everything] == [False, True, False]
    unread = api.get(LIST, {"unread": "1"}).json()["notifications"]
    assert [i["id"] for i in unread] == [ids[2], ids[0]]
    assert len(api.get(LIST, {"unread": "0"}).json()["notifications"]) == 3


def test_list_includes_announcements_for_the_group(user, make_user, api):
    group = Group.objects.create(name="staff")
    user.groups.add(group)
    mine = services.announce(title="staff only", audience=group)
    services.announce(title="others", audience=Group.objects.create(name="ops"))
    ids = [i["id"] for i in api.get(LIST).json()["notifications"]]
    assert ids == [mine.pk]


@pytest.mark.parametrize(
    "params, name",
    [
        ({"limit": "0"}, "limit"), ({"limit": "201"}, "limit"), ({"limit": "x"}, "limit"),
        ({"before": "x"}, "before"), ({"before": "-1"}, "before"), ({"before": "0"}, "before"),
        ({"unread": "maybe"}, "unread"),
    ],
)
def test_list_bad_parameters_are_400(user, api, params, name):
    assert_error(api.get(LIST, params), 400, "invalid_parameter", name)


# Unread count


def test_unread_count(user, other_user, api):
    ids = send(user, 3)
    send(other_user, 1)
    services.mark_read(user, [ids[0]])
    response = api.get(COUNT)
    assert response.status_code == 200 and response.json() == {"unread": 2}


# Mark read


def test_mark_read_by_ids_ignores_others_ids(user, other_user, api):
    ids = send(user, 3)
    foreign = send(other_user, 1)
    response = api.post(READ, {"ids": [ids[0], foreign[0], 999999]}, content_type="application/json")
    assert response.status_code == 200 and response.json() == {"unread": 2}
    assert services.unread_count(other_user) == 1


def test_mark_all_read(user, api):
    send(user, 3)
    response = api.post(READ, {"all": True}, content_type="application/json")
    assert response.status_code == 200 and response.json() == {"unread": 0}
    assert api.post(READ, {"all": True}, content_type="application/json").json() == {"unread": 0}


@pytest.mark.parametrize(
    "body, name",
    [
        ({}, "ids"), ({"ids": "1"}, "ids"), ({"ids": [1, "2"]}, "ids"), ({"ids": [True]}, "ids"),
        ({"all": False}, "all"), ({"all": 1}, "all"), ({"all": True, "ids": [1]}, "ids"),
        ({"ids": [1], "extra": 1}, "extra"), ([1, 2], "body"),
    ],
)
def test_mark_read_bad_bodies_are_400(user, api, body, name):
    response = api.post(READ, json.dumps(body), content_type="application/json")
    assert_error(response, 400, "invalid_parameter", name)


def test_mark_read_invalid_json_is_400(user, api):
    assert_error(api.post(READ, "{nope", content_type="application/json"), 400, "invalid_parameter", "body")


def test_mark_read_too_many_ids_is_400(user, api, settings):
    settings.NOTIFY = {"MAX_READ_IDS": 3}
    assert_error(api.post(READ, {"ids": [1, 2, 3, 4]}, content_type="application/json"), 400, "invalid_parameter", "ids")


def test_body_over_64_kib_is_413(user, api):
    body = json.dumps({"ids": [1] * 40_000})
    assert len(body) > 64 * 1024
    assert_error(api.post(READ, body, content_type="application/json"), 413, "payload_too_large")


@pytest.mark.django_db(transaction=True)
async def test_mark_read_pushes_read_to_open_streams(user, token, channel_layer):
    ids = await database_sync_to_async(send)(user, 2)
    stream = HttpClient("/notify/stream/", headers=auth(token))
    await stream.start()
    await stream.chunk()  # hello
    await wait_held(user)
    response = await AsyncClient().post(
        READ, {"ids": [ids[0]]}, content_type="application/json", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.json() == {"unread": 1}
    chunk = (await stream.chunk()).decode()
    assert chunk == f'event: read\ndata: {{"ids":[{ids[0]}],"unread":1}}\n\n'
    await stream.disconnect()


# Authentication and CSRF


def test_session_get_works_and_session_post_needs_csrf(user, browser):
    send(user, 1)
    assert browser.get(COUNT).json() == {"unread": 1}
    assert_error(browser.post(READ, {"all": True}, content_type="application/json"), 403, "csrf_failed")
    assert services.unread_count(user) == 1
    browser.get("/")  # the inbox page sets the CSRF cookie
    csrf = browser.cookies["csrftoken"].value
    response = browser.post(READ, {"all": True}, content_type="application/json", HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 200 and response.json() == {"unread": 0}


def test_bearer_post_needs_no_csrf(user, api):
    send(user, 1)
    assert api.post(READ, {"all": True}, content_type="application/json").json() == {"unread": 0}


def test_token_wins_over_session(user, other_user, browser):
    from notify.models import ApiToken

    send(other_user, 2)
    raw = ApiToken.objects.issue(user=other_user)
    assert browser.get(COUNT, **bearer(raw)).json() == {"unread": 2}
    assert_error(browser.get(COUNT, **bearer("ntk_bad")), 401, "not_authenticated")


@pytest.mark.parametrize("path", [LIST, COUNT, READ])
def test_no_credentials_is_401(path, transactional_db):
    method = Client().post if path == READ else Client().get
    assert_error(method(path), 401, "not_authenticated")


@pytest.mark.parametrize("path", [LIST, COUNT])
def test_bad_or_revoked_token_is_401(user, token, path):
    assert_error(Client().get(path, **bearer("ntk_wrong")), 401, "not_authenticated")
    services.revoke_token(token)
    assert_error(Client().get(path, **bearer(token)), 401, "not_authenticated")


def test_inactive_users_token_is_401(user, token):
    user.is_active = False
    user.save()
    assert_error(Client().get(COUNT, **bearer(token)), 401, "not_authenticated")


@pytest.mark.parametrize("path", [LIST, COUNT, READ])
def test_service_key_is_403_forbidden(service_key, path):
    client = Client(**bearer(service_key))
    response = client.post(path, {"all": True}, content_type="application/json") if path == READ else client.get(path)
    assert_error(response, 403, "forbidden")


@pytest.mark.parametrize("method, path", [("post", LIST), ("delete", COUNT), ("get", READ), ("put", READ)])
def test_wrong_method_is_405(user, api, method, path):
    response = getattr(api, method)(path)
    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] in ("GET", "POST")


@pytest.mark.parametrize("path", ["/notify/nope", "/notify/api/", "/notify/api/nope/", "/notify/api/notifications/7/",
                                  "/notify/api/send"])
def test_unknown_paths_under_notify_are_json_404(api, path):
    assert_error(api.get(path), 404, "not_found")
