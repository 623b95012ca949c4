"""Per-user preferences (issue 14): GET/PUT /notify/api/preferences/, the page, and
``muted`` on stored items."""

import pytest
from django.test import Client

from notify import services
from notify.models import Preference

from .streamhelpers import auth, get

pytestmark = pytest.mark.django_db(transaction=True)

PREFS = "/notify/api/preferences/"


@pytest.fixture(autouse=True)
def fast(settings, channel_layer):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def api(token):
    return Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {token}")


def test_get_before_any_put_gives_the_settings_defaults(settings, user, api):
    assert api.get(PREFS).json() == {"muted": [], "no_push": []}
    settings.NOTIFY = {"DEFAULT_MUTED": ["digest.*"], "DEFAULT_NO_PUSH": ["chat.*"]}
    assert api.get(PREFS).json() == {"muted": ["digest.*"], "no_push": ["chat.*"]}


def test_put_replaces_both_lists(user, api):
    response = api.put(PREFS, {"muted": ["build.*", "ci"], "no_push": ["chat.*"]}, content_type="application/json")
    assert response.status_code == 200
    assert response.json() == {"muted": ["build.*", "ci"], "no_push": ["chat.*"]}
    assert api.get(PREFS).json() == {"muted": ["build.*", "ci"], "no_push": ["chat.*"]}
    assert api.put(PREFS, {"muted": [], "no_push": []}, content_type="application/json").json() == {
        "muted": [], "no_push": []}
    assert api.get(PREFS).json() == {"muted": [], "no_push": []}


@pytest.mark.parametrize("body, name", [
    ({"muted": ["a"]}, "no_push"),
    ({"no_push": ["a"]}, "muted"),
    ({"muted": [], "no_push": [], "email": []}, "email"),
    ({"muted": [1], "no_push": []}, "muted"),
    ({"muted": [], "no_push": [None]}, "no_push"),
    ({"muted": "build.*", "no_push": []}, "muted"),
    ({"muted": [""], "no_push": []}, "muted"),
])
def test_bad_bodies_are_400_naming_the_key_and_store_nothing(user, api, body, name):
    api.put(PREFS, {"muted": ["kept"], "no_push": []}, content_type="application/json")
    response = api.put(PREFS, body, content_type="application/json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_parameter" and error["message"].startswith(name)
    assert api.get(PREFS).json() == {"muted": ["kept"], "no_push": []}


def test_session_put_needs_csrf(user):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    body = {"muted": ["x"], "no_push": []}
    assert browser.put(PREFS, body, content_type="application/json").json()["error"]["code"] == "csrf_failed"
    browser.get("/")
    response = browser.put(PREFS, body, content_type="application/json",
                           HTTP_X_CSRFTOKEN=browser.cookies["csrftoken"].value)
    assert response.status_code == 200 and not Preference.objects.exclude(muted=["x"]).exists()


def test_other_methods_and_service_keys(user, api, service_key):
    assert api.post(PREFS, {}, content_type="application/json").status_code == 405
    service = Client(HTTP_AUTHORIZATION=f"Bearer {service_key}")
    assert service.get(PREFS).json()["error"]["code"] == "forbidden"


def test_a_muted_kind_is_stored_listed_and_marked_muted_on_every_transport(user, other_user, api, token):
    api.put(PREFS, {"muted": ["build.*"], "no_push": []}, content_type="application/json")
    muted = services.send([user, other_user], title="nightly failed", kind="build.nightly.failed")[0]
    plain = services.send(user, title="hello", kind="chat")[0][0]
    assert muted[0].muted and not muted[1].muted  # fixed per recipient when stored
    listed = {i["id"]: i["muted"] for i in api.get("/notify/api/notifications/").json()["notifications"]}
    assert listed == {muted[0].pk: True, plain.pk: False}
    # Muting later does not change what was stored.
    api.put(PREFS, {"muted": ["chat"], "no_push": []}, content_type="application/json")
    listed = {i["id"]: i["muted"] for i in api.get("/notify/api/notifications/").json()["notifications"]}
    assert listed == {muted[0].pk: True, plain.pk: False}


async def test_long_poll_carries_muted(user, token):
    from channels.db import database_sync_to_async

    from notify.preferences import set_prefs

    await database_sync_to_async(set_prefs)(user, {"muted": ["build.*"], "no_push": []})
    [item], _ = await database_sync_to_async(services.send)(user, title="x", kind="build.x")
    status, _, body = await get("/notify/poll/?since=0&timeout=0", headers=auth(token))
    assert status == 200
    assert [(i["id"], i["muted"]) for i in body["notifications"]] == [(item.pk, True)]


def test_the_preferences_page_saves_and_the_inbox_links_to_it(user):
    browser = Client()
    browser.force_login(user)
    assert 'href="/notify/preferences/"' in browser.get("/").content.decode()
    page = browser.get("/notify/preferences/")
    assert page.status_code == 200 and b"Muted kinds" in page.content
    response = browser.post("/notify/preferences/", {"muted": "build.*\n\n deploy.* ", "no_push": "chat.*"})
    assert response.status_code == 302
    assert browser.get(PREFS).json() == {"muted": ["build.*", "deploy.*"], "no_push": ["chat.*"]}
    assert "Preferences saved" in browser.get(response["Location"]).content.decode()


def test_a_notification_added_in_the_admin_is_muted_by_the_recipients_preferences(user, make_user):
    from notify.models import Notification
    from notify.preferences import set_prefs

    admin = make_user("root", is_staff=True, is_superuser=True)
    set_prefs(user, {"muted": ["build.*"], "no_push": []})
    client = Client()
    client.force_login(admin)
    for kind in ("build.failed", "chat"):
        response = client.post("/admin/notify/notification/add/", {
            "recipient": user.pk, "kind": kind, "title": kind, "body": "", "level": "info", "url": "",
            "data": "{}", "dedupe_key": ""})
        assert response.status_code == 302, response.content[:500]
    assert dict(Notification.objects.values_list("kind", "muted")) == {"build.failed": True, "chat": False}
