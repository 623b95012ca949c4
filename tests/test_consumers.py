"""The WebSocket consumer at ``/ws/notify/`` (docs/protocol.md §2 and §3), through the full ASGI
application (routing and token-or-session auth) with ``WebsocketCommunicator``."""

import json
import logging
import re

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Group
from django.test import Client

from config.asgi import application
from notify import services
from notify.api import announce, asend
from notify.models import ApiToken, Entry
from notify.selectors import unread_count

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "pw-Secret-123"
NOTIFICATION_KEYS = {"id", "kind", "title", "body", "level", "url", "data", "created_at", "read", "muted"}


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def layer(channel_layer):
    """Every test here pushes through a fresh in-memory channel layer."""
    return channel_layer


def login_cookie(user) -> str:
    """Log ``user`` in with Django's test client; return the ``sessionid`` cookie value."""
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client.cookies["sessionid"].value


@pytest.fixture
def cookie(user):
    return login_cookie(user)


def socket(query="", *, cookie=None, token=None, origin="http://localhost", subprotocols=None):
    headers = []
    if cookie is not None:
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return WebsocketCommunicator(application, f"/ws/notify/{query}", headers=headers, subprotocols=subprotocols)


async def open_socket(query="", **auth):
    """Connect (must succeed); return ``(communicator, hello frame)``."""
    communicator = socket(query, **auth)
    connected, _ = await communicator.connect(timeout=3)
    assert connected
    hello = await communicator.receive_json_from(timeout=3)
    assert hello["type"] == "hello"
    return communicator, hello


async def refused(**auth) -> bool:
    communicator = socket(**auth)
    connected, _ = await communicator.connect(timeout=3)
    if connected:
        await communicator.disconnect()
    return not connected


async def expect_close(communicator, code):
    message = await communicator.receive_output(timeout=3)
    assert message == {"type": "websocket.close", "code": code}


async def sync(fn, *args, **kwargs):
    return await database_sync_to_async(fn)(*args, **kwargs)


# Authentication: session cookie and Origin


async def test_session_cookie_with_an_allowed_origin_is_accepted(user, cookie):
    [notification] = await asend(user, title="For alice")
    communicator, hello = await open_socket(cookie=cookie, origin="http://localhost:8000")
    assert hello["cursor"] == notification.pk and hello["unread"] == 1
    await communicator.disconnect()


@pytest.mark.parametrize("origin", ["http://127.0.0.1:8000", "https://localhost", "http://localhost"])
async def test_any_scheme_and_port_of_an_allowed_host_is_accepted(user, cookie, origin):
    communicator, _ = await open_socket(cookie=cookie, origin=origin)
    await communicator.disconnect()


@pytest.mark.parametrize(
    "origin", [None, "https://evil.example", "http://localhost.evil.example", "null", "not a url"]
)
async def test_session_cookie_with_a_missing_or_foreign_origin_is_refused_and_logged(cookie, origin, caplog):
    with caplog.at_level(logging.WARNING, logger="notify"):
        assert await refused(cookie=cookie, origin=origin)
    [record] = [r for r in caplog.records if r.name == "notify" and r.levelno == logging.WARNING]
    assert "Origin" in record.getMessage()
    if origin is not None:
        assert origin in record.getMessage()


@pytest.mark.parametrize(
    "origin, accepted",
    [("https://example.com", True), ("https://app.example.com:8443", True), ("https://example.com.evil.example", False),
     ("https://notexample.com", False), ("http://localhost", False)],
)
async def test_origin_follows_allowed_hosts(cookie, settings, origin, accepted):
    settings.ALLOWED_HOSTS = [".example.com"]
    assert await refused(cookie=cookie, origin=origin) is not accepted


async def test_no_credentials_are_refused(transactional_db):
    assert await refused()


async def test_a_bad_session_cookie_is_refused(transactional_db):
    assert await refused(cookie="not-a-session")


async def test_the_session_of_a_user_made_inactive_is_refused(user, cookie):
    user.is_active = False
    await sync(user.save)
    assert await refused(cookie=cookie)


# Authentication: Bearer tokens


@pytest.mark.parametrize("origin", [None, "https://evil.example", "http://localhost"])
async def test_a_bearer_token_is_accepted_with_any_origin(user, token, origin):
    await asend(user, title="Hi")
    communicator, hello = await open_socket(token=token, origin=origin)
    assert hello["unread"] == 1
    await communicator.disconnect()


async def test_with_both_token_and_cookie_the_token_decides(user, other_user, token):
    [mine] = await asend(user, title="For alice")
    await asend(other_user, title="For bob 1")
    await asend(other_user, title="For bob 2")
    bob_cookie = await sync(login_cookie, other_user)
    # The token is alice's: a foreign Origin does not matter and the stream is hers.
    communicator, hello = await open_socket("?since=0", token=token, cookie=bob_cookie, origin="https://evil.example")
    assert hello == {"type": "hello", "cursor": mine.pk, "unread": 1, "heartbeat": 25}
    frame = await communicator.receive_json_from(timeout=2)
    assert frame["notification"]["title"] == "For alice"
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.disconnect()


async def test_an_invalid_token_is_refused_even_with_a_valid_cookie(cookie):
    assert await refused(token="ntk_invalid", cookie=cookie)


@pytest.mark.parametrize("header", [b"Bearer", b"Bearer ", b"Basic dXNlcjpwdw==", b"Token abc"])
async def test_a_malformed_authorization_header_is_refused(user, cookie, header):
    communicator = WebsocketCommunicator(
        application, "/ws/notify/",
        headers=[(b"authorization", header), (b"cookie", f"sessionid={cookie}".encode()), (b"origin", b"http://localhost")],
    )
    connected, _ = await communicator.connect(timeout=3)
    assert not connected


async def test_a_revoked_token_is_refused(token):
    assert await sync(services.revoke_token, token) is not None
    assert await refused(token=token)


async def test_a_token_of_an_inactive_user_is_refused(user, token):
    user.is_active = False
    await sync(user.save)
    assert await refused(token=token)


async def test_a_service_key_is_refused_and_logged(service_key, caplog):
    with caplog.at_level(logging.WARNING, logger="notify"):
        assert await refused(token=service_key)
    assert any("service key" in r.getMessage() for r in caplog.records if r.name == "notify")


# Subprotocol and hello


async def test_the_notify_v1_subprotocol_is_selected_when_offered(token):
    communicator = socket(token=token, subprotocols=["notify.v1"])
    assert await communicator.connect(timeout=3) == (True, "notify.v1")
    await communicator.disconnect()
    communicator = socket(token=token, subprotocols=["notify.v0", "notify.v1"])
    assert await communicator.connect(timeout=3) == (True, "notify.v1")
    await communicator.disconnect()


async def test_a_client_offering_no_subprotocol_is_served_the_same_frames(user, token):
    communicator = socket(token=token)
    assert await communicator.connect(timeout=3) == (True, None)
    hello = await communicator.receive_json_from(timeout=3)
    assert set(hello) == {"type", "cursor", "unread", "heartbeat"}
    await communicator.disconnect()


async def test_hello_of_an_empty_stream(token):
    communicator, hello = await open_socket(token=token)
    assert hello == {"type": "hello", "cursor": 0, "unread": 0, "heartbeat": 25}
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.disconnect()


async def test_hello_carries_cursor_unread_and_heartbeat(user, other_user, token, settings):
    settings.NOTIFY = {"HEARTBEAT_SECONDS": 40}
    first, second = [(await asend(user, title=t))[0] for t in ("one", "two")]
    everyone = await sync(announce, title="all")
    await asend(other_user, title="not hers")
    await sync(services.mark_read, user, [first.pk])
    communicator, hello = await open_socket(token=token)
    assert hello == {"type": "hello", "cursor": everyone.pk, "unread": 2, "heartbeat": 40}
    await communicator.disconnect()


# Backlog replay and reset


async def test_the_backlog_after_since_is_replayed_oldest_first_then_live(user, other_user, token):
    sent = [(await asend(user, title=f"n{i}"))[0] for i in range(3)]
    await asend(other_user, title="not hers")
    everyone = await sync(announce, title="all")
    communicator, hello = await open_socket(f"?since={sent[0].pk}", token=token)
    assert hello["cursor"] == everyone.pk
    ids = [(await communicator.receive_json_from(timeout=2))["notification"]["id"] for _ in range(3)]
    assert ids == [sent[1].pk, sent[2].pk, everyone.pk]
    assert await communicator.receive_nothing(timeout=0.2)
    [live] = await asend(user, title="live")
    frame = await communicator.receive_json_from(timeout=2)
    assert frame["notification"]["id"] == live.pk
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.disconnect()


async def test_replayed_items_have_the_notification_shape_and_read_state(user, token):
    [read_one] = await asend(user, title="t1", body="b", kind="comment.reply", level="warning", url="/x", data={"k": [1]})
    [unread_one] = await asend(user, title="t2")
    await sync(services.mark_read, user, [read_one.pk])
    communicator, _ = await open_socket("?since=0", token=token)
    first = await communicator.receive_json_from(timeout=2)
    second = await communicator.receive_json_from(timeout=2)
    assert first["type"] == "notification" and set(first) == {"type", "notification"}
    item = first["notification"]
    assert set(item) == NOTIFICATION_KEYS
    assert {k: v for k, v in item.items() if k != "created_at"} == {
        "id": read_one.pk, "kind": "comment.reply", "title": "t1", "body": "b", "level": "warning",
        "url": "/x", "data": {"k": [1]}, "read": True, "muted": False,
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", item["created_at"])
    assert second["notification"]["id"] == unread_one.pk
    assert second["notification"]["read"] is False and second["notification"]["data"] == {}
    await communicator.disconnect()


async def test_without_since_nothing_is_replayed(user, token):
    await asend(user, title="old")
    communicator, hello = await open_socket(token=token)
    assert hello["unread"] == 1
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_since_at_or_past_the_cursor_replays_nothing(user, token):
    [latest] = await asend(user, title="old")
    for since in (latest.pk, latest.pk + 1000):
        communicator, _ = await open_socket(f"?since={since}", token=token)
        assert await communicator.receive_nothing(timeout=0.2)
        await communicator.disconnect()


async def test_a_backlog_of_exactly_backlog_limit_is_replayed(user, token, settings):
    settings.NOTIFY = {"BACKLOG_LIMIT": 3}
    sent = [(await asend(user, title=f"n{i}"))[0] for i in range(3)]
    communicator, _ = await open_socket("?since=0", token=token)
    ids = [(await communicator.receive_json_from(timeout=2))["notification"]["id"] for _ in range(3)]
    assert ids == [n.pk for n in sent]
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.disconnect()


async def test_more_than_backlog_limit_gets_reset_and_none_of_them(user, token, settings):
    settings.NOTIFY = {"BACKLOG_LIMIT": 3}
    sent = [(await asend(user, title=f"n{i}"))[0] for i in range(4)]
    communicator, hello = await open_socket("?since=0", token=token)
    assert await communicator.receive_json_from(timeout=2) == {"type": "reset", "cursor": sent[-1].pk}
    assert await communicator.receive_nothing(timeout=0.2)
    [live] = await asend(user, title="after reset")
    assert (await communicator.receive_json_from(timeout=2))["notification"]["id"] == live.pk
    await communicator.disconnect()


@pytest.mark.parametrize("since", ["abc", "-1", "1.5", "", "0x10", "1e3", " 1", "99999999999999999999"])
async def test_a_bad_since_gets_an_error_frame_and_close_4400(token, since):
    communicator = socket(f"?since={since}", token=token)
    connected, _ = await communicator.connect(timeout=3)
    assert connected
    frame = await communicator.receive_json_from(timeout=2)
    assert frame["type"] == "error" and frame["code"] == "invalid_parameter"
    assert "since" in frame["message"]
    await expect_close(communicator, 4400)


async def test_live_items_after_a_backlog_come_in_order_without_gap_or_duplicate(user, token):
    before = [(await asend(user, title=f"b{i}"))[0].pk for i in range(5)]
    communicator = socket("?since=0", token=token)
    connected, _ = await communicator.connect(timeout=3)
    assert connected
    after = [(await asend(user, title=f"a{i}"))[0].pk for i in range(5)]
    frames = [await communicator.receive_json_from(timeout=2) for _ in range(11)]
    assert frames[0]["type"] == "hello"
    assert [f["notification"]["id"] for f in frames[1:]] == before + after
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


# Live pushes and isolation


async def test_a_live_push_has_the_notification_shape(user, token):
    communicator, _ = await open_socket(token=token)
    [sent] = await asend(user, title="Alice replied", body="Looks good", kind="comment.reply", url="/posts/7#c3", data={"post": 7})
    frame = await communicator.receive_json_from(timeout=2)
    assert set(frame) == {"type", "notification"} and frame["type"] == "notification"
    item = frame["notification"]
    assert set(item) == NOTIFICATION_KEYS
    assert (item["id"], item["kind"], item["title"], item["body"], item["level"], item["url"], item["data"], item["read"]) == (
        sent.pk, "comment.reply", "Alice replied", "Looks good", "info", "/posts/7#c3", {"post": 7}, False
    )
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.disconnect()


async def test_another_users_socket_gets_nothing(user, other_user, token):
    alice, _ = await open_socket(token=token)
    bob_token = await sync(ApiToken.objects.issue, user=other_user)
    bob, _ = await open_socket(token=bob_token)
    await asend(user, title="private")
    assert (await alice.receive_json_from(timeout=2))["notification"]["title"] == "private"
    assert await bob.receive_nothing(timeout=0.3)
    await alice.disconnect()
    await bob.disconnect()


async def test_every_connection_of_the_user_gets_the_push(user, token, cookie):
    first, _ = await open_socket(token=token)
    second, _ = await open_socket(cookie=cookie)
    [sent] = await asend(user, title="both")
    for communicator in (first, second):
        assert (await communicator.receive_json_from(timeout=2))["notification"]["id"] == sent.pk
        await communicator.disconnect()


async def test_announcements_reach_their_audience_live(user, other_user, token):
    group = await sync(Group.objects.create, name="beta")
    await sync(group.user_set.add, user)
    alice, _ = await open_socket(token=token)
    bob_token = await sync(ApiToken.objects.issue, user=other_user)
    bob, _ = await open_socket(token=bob_token)
    everyone = await sync(announce, title="all")
    for communicator in (alice, bob):
        frame = await communicator.receive_json_from(timeout=2)
        assert frame["notification"]["id"] == everyone.pk and frame["notification"]["kind"] == "announcement"
    beta = await sync(announce, title="beta only", audience=group)
    assert (await alice.receive_json_from(timeout=2))["notification"]["id"] == beta.pk
    assert await bob.receive_nothing(timeout=0.3)
    await alice.disconnect()
    await bob.disconnect()


# read / read_all


async def test_read_is_synced_to_every_connection_of_the_user_with_unread(user, other_user, token, cookie):
    n1, n2, n3 = [(await asend(user, title=f"n{i}"))[0] for i in range(3)]
    [theirs] = await asend(other_user, title="bob's")
    first, _ = await open_socket(token=token)
    second, _ = await open_socket(cookie=cookie)
    bob_token = await sync(ApiToken.objects.issue, user=other_user)
    bob, _ = await open_socket(token=bob_token)
    await first.send_json_to({"type": "read", "ids": [n2.pk, n1.pk, theirs.pk, 999_999]})
    for communicator in (first, second):
        assert await communicator.receive_json_from(timeout=2) == {"type": "read", "ids": [n1.pk, n2.pk], "unread": 1}
    assert await bob.receive_nothing(timeout=0.2)
    assert await sync(unread_count, other_user) == 1
    assert await sync(unread_count, user) == 1

    # Nothing changes: no frame anywhere.
    await second.send_json_to({"type": "read", "ids": [n1.pk, theirs.pk]})
    await second.send_json_to({"type": "read", "ids": []})
    for communicator in (first, second, bob):
        assert await communicator.receive_nothing(timeout=0.3)
    for communicator in (first, second, bob):
        await communicator.disconnect()


async def test_read_of_an_announcement(user, token):
    everyone = await sync(announce, title="all")
    communicator, hello = await open_socket(token=token)
    assert hello["unread"] == 1
    await communicator.send_json_to({"type": "read", "ids": [everyone.pk]})
    assert await communicator.receive_json_from(timeout=2) == {"type": "read", "ids": [everyone.pk], "unread": 0}
    await communicator.disconnect()


async def test_read_all_is_synced_with_the_cursor_and_only_when_something_changed(user, other_user, token, cookie):
    await asend(user, title="one")
    latest = await sync(announce, title="two")
    [theirs] = await asend(other_user, title="bob's")
    first, _ = await open_socket(token=token)
    second, _ = await open_socket(cookie=cookie)
    await second.send_json_to({"type": "read_all"})
    for communicator in (first, second):
        assert await communicator.receive_json_from(timeout=2) == {
            "type": "read", "all": True, "cursor": latest.pk, "unread": 0,
        }
    # Bob's own notification and his copy of the announcement stay unread.
    assert await sync(unread_count, other_user) == 2
    await first.send_json_to({"type": "read_all"})
    assert await first.receive_nothing(timeout=0.3)
    assert await second.receive_nothing(timeout=0.1)
    await first.disconnect()
    await second.disconnect()


async def test_ids_of_other_users_are_ignored(user, other_user, token):
    [theirs] = await asend(other_user, title="bob's")
    communicator, _ = await open_socket(token=token)
    await communicator.send_json_to({"type": "read", "ids": [theirs.pk]})
    assert await communicator.receive_nothing(timeout=0.3)
    assert await sync(unread_count, other_user) == 1
    await communicator.disconnect()


# ping, pong and heartbeat


async def test_ping_gets_pong(token):
    communicator, _ = await open_socket(token=token)
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from(timeout=2) == {"type": "pong"}
    await communicator.disconnect()


async def test_the_server_pings_after_heartbeat_seconds_of_silence(token, settings):
    settings.NOTIFY = {"HEARTBEAT_SECONDS": 1}
    communicator, hello = await open_socket(token=token)
    assert hello["heartbeat"] == 1
    assert await communicator.receive_nothing(timeout=0.6), "pinged before a heartbeat of silence"
    assert await communicator.receive_json_from(timeout=3) == {"type": "ping"}
    assert await communicator.receive_json_from(timeout=3) == {"type": "ping"}
    await communicator.disconnect()


# Bad frames


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        " ",
        "[]",
        '"read"',
        "42",
        "null",
        "{}",
        '{"type": "nope"}',
        '{"type": 5}',
        '{"type": ["read"]}',
        '{"type": "read"}',
        '{"type": "read", "ids": "1"}',
        '{"type": "read", "ids": [1, "2"]}',
        '{"type": "read", "ids": [true]}',
        '{"type": "read", "ids": [1.0]}',
        '{"type": "read", "ids": {"1": 1}}',
        '{"type": "read", "ids": [[1]]}',
        "[" * 30_000 + "]" * 30_000,
        '{"type": "read", "ids": [' + "[" * 30_000 + "]" * 30_000 + "]}",
    ],
)
async def test_a_bad_frame_gets_invalid_frame_and_the_connection_stays_open(user, token, text):
    [n] = await asend(user, title="t")
    communicator, _ = await open_socket(token=token)
    await communicator.send_to(text_data=text)
    frame = await communicator.receive_json_from(timeout=2)
    assert frame["type"] == "error" and frame["code"] == "invalid_frame" and frame["message"]
    assert await sync(unread_count, user) == 1
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from(timeout=2) == {"type": "pong"}
    await communicator.disconnect()


@pytest.mark.parametrize("ids", [[2**63], [-(2**63) - 1], [10**30, 1]])
async def test_ids_out_of_the_database_range_are_ignored(user, token, ids):
    [n] = await asend(user, title="t")
    communicator, _ = await open_socket(token=token)
    await communicator.send_json_to({"type": "read", "ids": ids})
    assert await communicator.receive_nothing(timeout=0.3)
    assert await sync(unread_count, user) == 1
    await communicator.send_json_to({"type": "read", "ids": [n.pk, 2**64]})
    assert await communicator.receive_json_from(timeout=2) == {"type": "read", "ids": [n.pk], "unread": 0}
    await communicator.disconnect()


async def test_a_binary_frame_gets_invalid_frame_and_the_connection_stays_open(token):
    communicator, _ = await open_socket(token=token)
    await communicator.send_to(bytes_data=json.dumps({"type": "ping"}).encode())
    frame = await communicator.receive_json_from(timeout=2)
    assert frame["type"] == "error" and frame["code"] == "invalid_frame"
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from(timeout=2) == {"type": "pong"}
    await communicator.disconnect()


async def test_a_message_of_64_kib_is_still_a_frame(token):
    communicator, _ = await open_socket(token=token)
    await communicator.send_to(text_data="x" * 65536)
    frame = await communicator.receive_json_from(timeout=2)
    assert frame["code"] == "invalid_frame"
    await communicator.disconnect()


@pytest.mark.parametrize(
    "message",
    [
        {"text_data": "x" * 65537},
        {"text_data": "é" * 32769},  # 32,769 characters, 65,538 bytes of UTF-8
        {"text_data": json.dumps({"type": "read", "ids": list(range(20_000))})},
        {"bytes_data": b"\0" * 65537},
    ],
)
async def test_a_message_over_64_kib_closes_4009(token, message):
    communicator, _ = await open_socket(token=token)
    await communicator.send_to(**message)
    await expect_close(communicator, 4009)


async def test_too_many_read_ids_get_invalid_frame(token, settings):
    settings.NOTIFY = {"MAX_READ_IDS": 10}
    communicator, _ = await open_socket(token=token)
    await communicator.send_json_to({"type": "read", "ids": list(range(11))})
    assert (await communicator.receive_json_from(timeout=2))["code"] == "invalid_frame"
    await communicator.disconnect()


# Token revocation


async def test_revoking_the_token_closes_its_connections_only(user, token, cookie):
    by_token, _ = await open_socket(token=token)
    by_cookie, _ = await open_socket(cookie=cookie)
    assert await sync(services.revoke_token, token) is not None
    message = await by_token.receive_output(timeout=3)
    assert message["type"] == "websocket.close"
    assert await by_cookie.receive_nothing(timeout=0.3)
    [sent] = await asend(user, title="still here")
    assert (await by_cookie.receive_json_from(timeout=2))["notification"]["id"] == sent.pk
    await by_cookie.disconnect()
    assert await refused(token=token)


async def test_revoking_in_the_admin_closes_the_connection(user, token, make_user):
    staff = await sync(make_user, "staff", is_staff=True, is_superuser=True)
    communicator, _ = await open_socket(token=token)

    def revoke_in_admin():
        client = Client()
        client.force_login(staff)
        pk = ApiToken.objects.get().pk
        answer = client.post(
            "/admin/notify/apitoken/", {"action": "revoke", "_selected_action": [pk], "index": 0}
        )
        assert answer.status_code == 302

    await sync(revoke_in_admin)
    message = await communicator.receive_output(timeout=3)
    assert message["type"] == "websocket.close"
    assert await refused(token=token)


async def test_revoking_another_token_of_the_user_keeps_the_connection(user, token):
    other = await sync(ApiToken.objects.issue, user=user, name="phone")
    communicator, _ = await open_socket(token=token)
    await sync(services.revoke_token, other)
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


# Nothing of anyone else, whatever the input


async def test_nothing_is_stored_or_leaked_by_client_frames(user, other_user, token):
    await asend(other_user, title="secret of bob")
    communicator, _ = await open_socket("?since=0", token=token)
    for text in ['{"type": "read_all", "user": %d}' % other_user.pk, '{"type": "read", "ids": [], "user": 1}']:
        await communicator.send_to(text_data=text)
    assert await communicator.receive_nothing(timeout=0.3)
    assert await sync(unread_count, other_user) == 1
    assert await sync(Entry.objects.count) == 1
    await communicator.disconnect()
