"""The Python send API, ``notify.api`` (docs/protocol.md §6), and announcement audiences (§1)."""

import asyncio
import threading
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from notify.api import announce, asend, send
from notify.transports.websocket import NotificationConsumer
from notify.models import Announcement, Entry, Notification, Receipt
from notify.selectors import read_stream

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def as_user(app, user):
    """Inject ``user`` into the scope (no cookie plumbing: auth is tested elsewhere)."""

    async def wrapped(scope, receive, send):
        return await app({**scope, "user": user}, receive, send)

    return wrapped


async def open_socket(user, query=""):
    """Connect a WebSocket for ``user`` and consume its ``hello`` frame."""
    communicator = WebsocketCommunicator(
        as_user(NotificationConsumer.as_asgi(), user), f"/ws/notify/{query}"
    )
    connected, _ = await communicator.connect()
    assert connected
    hello = await communicator.receive_json_from(timeout=2)
    assert hello["type"] == "hello"
    return communicator


def stream(user):
    """``(ids in the user's stream, oldest first; unread count)``, as every transport reads it."""
    read = read_stream(user, cursor=0, limit=10_000)
    return [item["id"] for item in read.items], read.unread


# Recipients


def test_send_to_a_user_stores_one_notification_with_the_given_fields(user):
    [notification] = send(
        user, title="Alice replied", body="Looks good.", kind="comment.reply", level="success",
        url="/posts/7#c3", data={"post": 7},
    )
    stored = Notification.objects.get()
    assert stored.pk == notification.pk
    assert (stored.recipient, stored.title, stored.body, stored.kind, stored.level, stored.url, stored.data) == (
        user, "Alice replied", "Looks good.", "comment.reply", "success", "/posts/7#c3", {"post": 7}
    )


def test_send_defaults(user):
    [notification] = send(user, title="Hi")
    notification.refresh_from_db()
    assert (notification.body, notification.kind, notification.level, notification.url) == ("", "message", "info", "")
    assert notification.data == {}
    assert notification.dedupe_key is None


def test_send_to_a_user_id(user):
    [notification] = send(user.pk, title="Hi")
    assert notification.recipient_id == user.pk
    assert Notification.objects.get().recipient == user


def test_send_to_an_iterable_of_users_and_ids_keeps_first_appearance_order(make_user):
    a, b, c = make_user("a"), make_user("b"), make_user("c")
    result = send([c, a.pk, b], title="Hi")
    assert [n.recipient_id for n in result] == [c.pk, a.pk, b.pk]
    assert sorted(Notification.objects.values_list("recipient_id", flat=True)) == sorted([a.pk, b.pk, c.pk])


def test_send_to_a_generator(make_user):
    a, b = make_user("a"), make_user("b")
    result = send((u for u in [b, a]), title="Hi")
    assert [n.recipient_id for n in result] == [b.pk, a.pk]


def test_a_recipient_named_twice_gets_one_notification(user, other_user):
    result = send([other_user, user, other_user.pk, user], title="Hi")
    assert [n.recipient_id for n in result] == [other_user.pk, user.pk]
    assert Notification.objects.count() == 2
    assert Notification.objects.filter(recipient=other_user).count() == 1


def test_send_to_a_queryset(make_user):
    users = [make_user(f"u{i}") for i in range(3)]
    make_user("outsider")
    queryset = get_user_model().objects.filter(username__startswith="u").order_by("-username")
    result = send(queryset, title="Hi")
    assert [n.recipient_id for n in result] == [u.pk for u in reversed(users)]
    assert Notification.objects.count() == 3


def test_send_to_a_group_reaches_its_members_only(make_user):
    members = [make_user("m1"), make_user("m2")]
    outsider = make_user("outsider")
    group = Group.objects.create(name="staff")
    group.user_set.add(*members)
    result = send(group, title="Hi")
    assert sorted(n.recipient_id for n in result) == sorted(u.pk for u in members)
    assert not Notification.objects.filter(recipient=outsider).exists()


def test_send_to_nobody_stores_nothing(transactional_db):
    assert send([], title="Hi") == []
    assert send(Group.objects.create(name="empty"), title="Hi") == []
    assert Entry.objects.count() == 0


def test_the_returned_notifications_are_saved_with_ids(user, other_user):
    result = send([user, other_user], title="Hi")
    assert all(isinstance(n, Notification) and n.pk for n in result)
    assert result[0].pk != result[1].pk


# Validation: each bad field raises ValueError naming it, and nothing is stored


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": 5}, "title"),
        ({"title": "ok", "body": "x" * 10_001}, "body"),
        ({"title": "ok", "body": None}, "body"),
        ({"title": "ok", "kind": "Comment Reply"}, "kind"),
        ({"title": "ok", "kind": "x" * 65}, "kind"),
        ({"title": "ok", "kind": ""}, "kind"),
        ({"title": "ok", "level": "critical"}, "level"),
        ({"title": "ok", "level": "INFO"}, "level"),
        ({"title": "ok", "url": "javascript:alert(1)"}, "url"),
        ({"title": "ok", "url": "/has space"}, "url"),
        ({"title": "ok", "data": [1, 2]}, "data"),
        ({"title": "ok", "data": "{}"}, "data"),
        ({"title": "ok", "data": {"blob": "x" * 8192}}, "data"),
        ({"title": "ok", "data": {"when": timezone.now()}}, "data"),
        ({"title": "ok", "dedupe_key": ""}, "dedupe_key"),
        ({"title": "ok", "dedupe_key": 7}, "dedupe_key"),
    ],
)
def test_a_bad_field_raises_value_error_naming_it_and_stores_nothing(user, other_user, fields, field):
    with pytest.raises(ValueError, match=field) as info:
        send([user, other_user], **fields)
    assert getattr(info.value, "field", field) == field
    assert Entry.objects.count() == 0


def test_data_of_exactly_8_kib_is_accepted(user):
    # {"b":"..."} is 8 bytes of JSON around the value.
    data = {"b": "x" * (8192 - 8)}
    [notification] = send(user, title="ok", data=data)
    assert Notification.objects.get(pk=notification.pk).data == data


def test_data_size_counts_utf8_bytes_not_characters(user):
    with pytest.raises(ValueError, match="data"):
        send(user, title="ok", data={"b": "é" * 4500})  # 4,500 characters, 9,000 bytes
    assert Entry.objects.count() == 0


def test_an_unknown_recipient_stores_nothing_for_anyone(user):
    with pytest.raises(ValueError, match="recipients"):
        send([user, 999_999_999], title="Hi")
    assert Entry.objects.count() == 0


@pytest.mark.parametrize("recipients", ["alice", b"alice", {"user": 1}, None, 1.5, True, [True], [None]])
def test_recipients_of_another_type_raise_value_error(user, recipients):
    with pytest.raises(ValueError, match="recipients"):
        send(recipients, title="Hi")
    assert Entry.objects.count() == 0


# dedupe_key


def test_the_same_dedupe_key_for_the_same_recipient_creates_nothing_new(user):
    [first] = send(user, title="Order shipped", dedupe_key="order-7-shipped")
    [again] = send(user, title="Order shipped", dedupe_key="order-7-shipped")
    assert again.pk == first.pk
    assert Notification.objects.count() == 1


def test_a_dedupe_key_is_per_recipient(user, other_user):
    [mine] = send(user, title="Hi", dedupe_key="k")
    result = send([other_user, user], title="Hi", dedupe_key="k")
    assert result[1].pk == mine.pk
    assert result[0].recipient_id == other_user.pk and result[0].pk != mine.pk
    assert Notification.objects.count() == 2


def test_another_dedupe_key_or_none_creates_a_new_notification(user):
    send(user, title="Hi", dedupe_key="a")
    send(user, title="Hi", dedupe_key="b")
    send(user, title="Hi")
    send(user, title="Hi")
    assert Notification.objects.count() == 4


async def test_a_deduplicated_send_pushes_nothing_again(user, channel_layer):
    await asend(user, title="Hi", dedupe_key="k")
    communicator = await open_socket(user)
    await asend(user, title="Hi", dedupe_key="k")
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


# Pushes: after commit only


async def test_asend_returns_the_notifications_and_pushes_them_live(user, channel_layer):
    communicator = await open_socket(user)
    [notification] = await asend(user, title="Live", kind="comment.reply", data={"post": 7})
    frame = await communicator.receive_json_from(timeout=2)
    assert frame["type"] == "notification"
    assert frame["notification"]["id"] == notification.pk
    assert frame["notification"]["title"] == "Live"
    assert frame["notification"]["data"] == {"post": 7}
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.disconnect()


async def test_a_rolled_back_transaction_stores_and_pushes_nothing(user, channel_layer):
    communicator = await open_socket(user)

    def send_then_fail():
        with transaction.atomic():
            send(user, title="Never")
            raise RuntimeError("rollback")

    with pytest.raises(RuntimeError):
        await database_sync_to_async(send_then_fail)()
    assert await communicator.receive_nothing(timeout=0.3)
    assert await database_sync_to_async(Entry.objects.count)() == 0
    await communicator.disconnect()


async def test_the_push_waits_for_the_surrounding_commit(user, channel_layer):
    communicator = await open_socket(user)
    sent, commit = threading.Event(), threading.Event()
    result = {}

    def send_and_hold():
        try:
            with transaction.atomic():
                result["ids"] = [n.pk for n in send(user, title="Held")]
                sent.set()
                assert commit.wait(10)
        finally:
            connection.close()

    task = asyncio.ensure_future(database_sync_to_async(send_and_hold, thread_sensitive=False)())
    assert await database_sync_to_async(sent.wait, thread_sensitive=False)(10)
    assert await communicator.receive_nothing(timeout=0.3), "pushed before commit"
    commit.set()
    await task
    frame = await communicator.receive_json_from(timeout=2)
    assert frame["notification"]["id"] == result["ids"][0]
    await communicator.disconnect()


async def test_a_push_reaches_only_its_recipient(user, other_user, channel_layer):
    mine = await open_socket(user)
    theirs = await open_socket(other_user)
    await asend(user, title="Private")
    assert (await mine.receive_json_from(timeout=2))["notification"]["title"] == "Private"
    assert await theirs.receive_nothing(timeout=0.3)
    await mine.disconnect()
    await theirs.disconnect()


async def test_an_announcement_is_pushed_after_commit_to_its_audience(user, other_user, channel_layer):
    group = await database_sync_to_async(Group.objects.create)(name="beta")
    await database_sync_to_async(group.user_set.add)(user)
    member = await open_socket(user)
    outsider = await open_socket(other_user)

    def announce_then_fail():
        with transaction.atomic():
            announce(title="Never")
            raise RuntimeError("rollback")

    with pytest.raises(RuntimeError):
        await database_sync_to_async(announce_then_fail)()
    assert await member.receive_nothing(timeout=0.3)

    announcement = await database_sync_to_async(announce)(title="Beta is open", audience=group)
    frame = await member.receive_json_from(timeout=2)
    assert frame["notification"]["id"] == announcement.pk
    assert frame["notification"]["kind"] == "announcement"
    assert await outsider.receive_nothing(timeout=0.3)
    await member.disconnect()
    await outsider.disconnect()


# Announcements


def test_announce_stores_one_row_whatever_the_audience_size(make_user):
    make_user("first")
    with CaptureQueriesContext(connection) as one_user:
        announce(title="Maintenance")
    for i in range(40):
        make_user(f"user{i}")
    with CaptureQueriesContext(connection) as many_users:
        announcement = announce(title="Maintenance again")
    assert Announcement.objects.count() == 2
    assert Entry.objects.count() == 2
    assert Receipt.objects.count() == 0
    assert len(many_users.captured_queries) == len(one_user.captured_queries)
    stored = Announcement.objects.get(pk=announcement.pk)
    assert stored.kind == "announcement" and stored.recipient is None


def test_announce_returns_the_announcement_with_its_stream_id(user):
    announcement = announce(title="Hello all", body="Welcome", level="warning", url="https://example.com/x")
    assert isinstance(announcement, Announcement)
    assert stream(user)[0] == [announcement.pk]
    item = read_stream(user, cursor=0, limit=10).items[0]
    assert (item["kind"], item["title"], item["body"], item["level"], item["url"], item["data"]) == (
        "announcement", "Hello all", "Welcome", "warning", "https://example.com/x", {}
    )


def test_notifications_and_announcements_share_one_increasing_id_sequence(user):
    [first] = send(user, title="1")
    middle = announce(title="2")
    [last] = send(user, title="3")
    assert first.pk < middle.pk < last.pk
    assert stream(user)[0] == [first.pk, middle.pk, last.pk]


def test_an_announcement_reaches_users_who_joined_before_it_only(make_user):
    early = make_user("early")
    announcement = announce(title="Hi")
    late = make_user("late")
    assert stream(early) == ([announcement.pk], 1)
    assert stream(late) == ([], 0)


def test_a_group_narrows_the_audience(make_user):
    member, outsider = make_user("member"), make_user("outsider")
    group = Group.objects.create(name="beta")
    group.user_set.add(member)
    announcement = announce(title="Beta", audience=group)
    assert stream(member) == ([announcement.pk], 1)
    assert stream(outsider) == ([], 0)


def test_group_membership_is_checked_when_the_stream_is_read(make_user):
    member, joiner = make_user("member"), make_user("joiner")
    group = Group.objects.create(name="beta")
    group.user_set.add(member)
    announcement = announce(title="Beta", audience=group)
    assert stream(joiner) == ([], 0)
    group.user_set.add(joiner)
    assert stream(joiner) == ([announcement.pk], 1)
    group.user_set.remove(member)
    assert stream(member) == ([], 0)


def test_an_expired_announcement_is_no_longer_in_the_stream_nor_unread(user):
    announcement = announce(title="Sale", expires_at=timezone.now() + timedelta(hours=1))
    assert stream(user) == ([announcement.pk], 1)
    Announcement.objects.filter(pk=announcement.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert stream(user) == ([], 0)


def test_an_expired_announcement_past_the_cursor_is_not_replayed(user):
    expired = announce(title="Sale", expires_at=timezone.now() + timedelta(hours=1))
    [kept] = send(user, title="Personal")
    Announcement.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    read = read_stream(user, cursor=expired.pk - 1, limit=10)
    assert [item["id"] for item in read.items] == [kept.pk]
    assert read.latest == kept.pk


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"title": ""}, "title"),
        ({"title": "ok", "level": "loud"}, "level"),
        ({"title": "ok", "url": "data:text/html,x"}, "url"),
        ({"title": "ok", "audience": "beta"}, "audience"),
        ({"title": "ok", "expires_at": "2099-01-01T00:00:00Z"}, "expires_at"),
        ({"title": "ok", "expires_at": timezone.now().replace(tzinfo=None) + timedelta(days=1)}, "expires_at"),
        ({"title": "ok", "expires_at": timezone.now() - timedelta(seconds=1)}, "expires_at"),
    ],
)
def test_a_bad_announcement_field_raises_value_error_naming_it_and_stores_nothing(user, fields, field):
    with pytest.raises(ValueError, match=field):
        announce(**fields)
    assert Entry.objects.count() == 0


def test_an_announcement_without_audience_reaches_every_active_user(make_user):
    users = [make_user(f"u{i}") for i in range(3)]
    announcement = announce(title="All")
    for u in users:
        assert stream(u)[0] == [announcement.pk]
