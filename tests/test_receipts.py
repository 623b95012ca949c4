"""Delivery receipts (issue 14): the WebSocket ack frame, POST ack/, ``delivered`` in
the inbox API, and the admin's delivered/read counts of an announcement."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import Group
from django.test import Client

from notify import services
from notify.models import ApiToken, DeviceReceipt
from notify.receipts import delivered_through

from .test_consumers import open_socket

pytestmark = pytest.mark.django_db(transaction=True)

ACK = "/notify/api/notifications/ack/"
LIST = "/notify/api/notifications/"


@pytest.fixture(autouse=True)
def fast(settings, channel_layer):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def bearer(token):
    return Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {token}")


def delivered_flags(client):
    return {item["id"]: item["delivered"] for item in client.get(LIST).json()["notifications"]}


def send(user, title="t", **fields):
    return services.send(user, title=title, **fields)[0][0].pk


# --- HTTP ------------------------------------------------------------------------------


def test_ack_endpoint_marks_ids_up_to_n_delivered(user, token):
    api = bearer(token)
    first, second, third = send(user), send(user), send(user)
    assert delivered_flags(api) == {first: False, second: False, third: False}
    response = api.post(ACK, {"id": second}, content_type="application/json")
    assert response.status_code == 204 and response.content == b""
    assert delivered_flags(api) == {first: True, second: True, third: False}
    # A lower ack later (another tab) does not move it back.
    assert api.post(ACK, {"id": first, "client": "tab2"}, content_type="application/json").status_code == 204
    assert api.post(ACK, {"id": first}, content_type="application/json").status_code == 204
    assert delivered_flags(api) == {first: True, second: True, third: False}


def test_foreign_and_future_ids_change_nothing(user, other_user, token):
    api = bearer(token)
    mine = send(user)
    foreign = send(other_user)
    for pk in (foreign, foreign + 1000, 0, -5, 2**63, 2**80):
        assert api.post(ACK, {"id": pk}, content_type="application/json").status_code == 204
    assert delivered_flags(api) == {mine: False}
    assert not DeviceReceipt.objects.exists()


def test_an_announcement_before_joining_or_of_another_group_is_not_in_the_stream(user, token):
    group = Group.objects.create(name="ops")
    other_group = services.announce(title="ops only", audience=group)
    mine = send(user)
    assert bearer(token).post(ACK, {"id": other_group.pk}, content_type="application/json").status_code == 204
    assert delivered_through(user.pk) == 0
    assert bearer(token).post(ACK, {"id": mine}, content_type="application/json").status_code == 204
    assert delivered_through(user.pk) == mine


@pytest.mark.parametrize("body", [{"id": "3"}, {"id": 1.5}, {"id": None}, {"id": True}, {}, {"id": [1]}])
def test_a_non_integer_id_is_400_naming_id(user, token, body):
    response = bearer(token).post(ACK, body, content_type="application/json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_parameter" and error["message"].startswith("id")


def test_session_ack_needs_csrf_and_service_keys_are_refused(user, service_key):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    pk = send(user)
    assert browser.post(ACK, {"id": pk}, content_type="application/json").json()["error"]["code"] == "csrf_failed"
    browser.get("/")
    csrf = browser.cookies["csrftoken"].value
    assert browser.post(ACK, {"id": pk}, content_type="application/json", HTTP_X_CSRFTOKEN=csrf).status_code == 204
    assert delivered_through(user.pk) == pk
    response = bearer(service_key).post(ACK, {"id": pk}, content_type="application/json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"


def test_one_row_per_device_however_many_acks(user, token):
    api = bearer(token)
    for _ in range(5):
        pk = send(user)
        api.post(ACK, {"id": pk, "client": "laptop"}, content_type="application/json")
        api.post(ACK, {"id": pk, "client": "phone"}, content_type="application/json")
        api.post(ACK, {"id": pk}, content_type="application/json")
    token_id = ApiToken.objects.get(user=user).pk
    assert sorted(DeviceReceipt.objects.values_list("device", "delivered_through")) == [
        ("c:laptop", pk), ("c:phone", pk), (f"t:{token_id}", pk)]


# --- WebSocket -------------------------------------------------------------------------


async def wait_delivered(user, pk, timeout=1.0):
    """Poll until the user's delivered watermark reaches ``pk`` (the contract: <= 1 s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await database_sync_to_async(delivered_through)(user.pk)
        if value >= pk or loop.time() > deadline:
            return value
        await asyncio.sleep(0.05)


async def test_ack_frame_counts_within_a_second(user, other_user, token):
    mine = await database_sync_to_async(send)(user)
    foreign = await database_sync_to_async(send)(other_user)
    ws, _ = await open_socket("?since=0&client=tab-1", token=token)
    frame = await ws.receive_json_from(timeout=2)
    assert frame["notification"]["id"] == mine
    # Foreign and future ids: no error frame, nothing recorded.
    await ws.send_json_to({"type": "ack", "id": foreign})
    await ws.send_json_to({"type": "ack", "id": foreign + 100})
    assert await ws.receive_nothing(timeout=0.2)
    await ws.send_json_to({"type": "ack", "id": mine})
    assert await wait_delivered(user, mine) == mine
    await asyncio.sleep(0.6)  # a later flush would have shown the foreign ids (both > mine)
    assert await database_sync_to_async(delivered_through)(user.pk) == mine
    assert await ws.receive_nothing(timeout=0.1)
    device = await database_sync_to_async(lambda: list(DeviceReceipt.objects.values_list("device", flat=True)))()
    assert device == ["c:tab-1"]
    await ws.disconnect()


@pytest.mark.parametrize("frame", [{"type": "ack"}, {"type": "ack", "id": "7"}, {"type": "ack", "id": 1.0},
                                   {"type": "ack", "id": None}, {"type": "ack", "id": False}])
async def test_a_non_integer_ack_gets_invalid_frame(user, token, frame):
    ws, _ = await open_socket("", token=token)
    await ws.send_json_to(frame)
    error = await ws.receive_json_from(timeout=2)
    assert error["type"] == "error" and error["code"] == "invalid_frame"
    await ws.send_json_to({"type": "ping"})
    assert (await ws.receive_json_from(timeout=2))["type"] == "pong"  # still open
    await ws.disconnect()


# --- admin -----------------------------------------------------------------------------


def test_admin_shows_delivered_and_read_counts_of_an_announcement(make_user):
    admin = make_user("root", is_staff=True, is_superuser=True)
    ann_users = [make_user(f"a{i}") for i in range(4)]
    announcement = services.announce(title="Planned downtime")
    # a0 acked it on a device; a1 acked a later item; a2 read it; a3 nothing.
    later = services.send(ann_users[1], title="later")[0][0]
    for user, pk in ((ann_users[0], announcement.pk), (ann_users[1], later.pk)):
        bearer(ApiToken.objects.issue(user=user)).post(ACK, {"id": pk}, content_type="application/json")
    services.mark_read(ann_users[2], [announcement.pk])
    client = Client()
    client.force_login(admin)
    page = client.get(f"/admin/notify/announcement/{announcement.pk}/change/").content.decode()
    assert 'data-delivered="2" data-read="1" data-audience="5"' in page
    assert "delivered to 2 and read by 1 of 5 user(s)" in page
    listing = client.get("/admin/notify/announcement/").content.decode()
    assert "delivered to" in listing.lower()
