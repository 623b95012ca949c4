"""The process hub: entries reach connections in id order, gaps filled from the database."""

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.utils import timezone

from notify import services
from notify.consumers import NotificationConsumer
from notify.hub import HUB_GROUP, entry_payload, get_hub
from notify.models import Notification


def as_user(app, user):
    """Inject an authenticated user into the scope (as the token middleware would)."""

    async def wrapped(scope, receive, send):
        return await app({**scope, "user": user, "notify_auth": "token", "notify_token": None}, receive, send)

    return wrapped


async def connect(user, query=""):
    communicator = WebsocketCommunicator(as_user(NotificationConsumer.as_asgi(), user), f"/ws/notify/{query}")
    connected, _ = await communicator.connect()
    assert connected
    hello = await communicator.receive_json_from(timeout=5)
    assert hello["type"] == "hello"
    return communicator


@database_sync_to_async
def store_without_push(user, *titles):
    """Store notifications but push none of them (as if every push were lost)."""
    return [Notification.objects.create(recipient=user, title=title) for title in titles]


async def received_titles(communicator, count):
    frames = [await communicator.receive_json_from(timeout=5) for _ in range(count)]
    assert all(f["type"] == "notification" for f in frames)
    return [f["notification"]["title"] for f in frames]


@pytest.mark.django_db(transaction=True)
async def test_out_of_order_pushes_reach_the_client_in_id_order(user, channel_layer):
    communicator = await connect(user)
    first, second = await store_without_push(user, "first", "second")
    # The later entry's push arrives first (another process was quicker).
    await channel_layer.group_send(HUB_GROUP, {"type": "notify.entries", "entries": [entry_payload(second)]})
    await channel_layer.group_send(HUB_GROUP, {"type": "notify.entries", "entries": [entry_payload(first)]})
    assert await received_titles(communicator, 2) == ["first", "second"]
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_lost_push_is_read_from_the_database_before_later_ones(user, channel_layer):
    communicator = await connect(user)
    lost, later = await store_without_push(user, "lost", "later")
    await channel_layer.group_send(HUB_GROUP, {"type": "notify.entries", "entries": [entry_payload(later)]})
    assert await received_titles(communicator, 2) == ["lost", "later"]
    await communicator.disconnect()


@database_sync_to_async
def send_and_roll_back(user):
    with pytest.raises(RuntimeError), transaction.atomic():
        services.send(user, title="rolled back")
        raise RuntimeError("abort")


@pytest.mark.django_db(transaction=True)
async def test_an_id_lost_to_a_rollback_does_not_stop_later_entries(user, channel_layer):
    communicator = await connect(user)
    await send_and_roll_back(user)
    await database_sync_to_async(services.send)(user, title="after the rollback")
    assert await received_titles(communicator, 1) == ["after the rollback"]
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_one_message_per_send_reaches_every_connection_of_the_process(make_user, channel_layer):
    users = [await database_sync_to_async(make_user)(f"u{i}") for i in range(3)]
    communicators = [await connect(u) for u in users for _ in range(2)]
    hub = get_hub()
    assert hub.count == 6
    announcement = await database_sync_to_async(services.announce)(title="to all")
    for communicator in communicators:
        frame = await communicator.receive_json_from(timeout=5)
        assert frame["notification"]["id"] == announcement.pk
    personal, _ = await database_sync_to_async(services.send)(users[0], title="only u0")
    for communicator in communicators[:2]:
        assert (await communicator.receive_json_from(timeout=5))["notification"]["id"] == personal[0].pk
    for communicator in communicators[2:]:
        assert await communicator.receive_nothing(timeout=0.2)
    for communicator in communicators:
        await communicator.disconnect()
    assert hub.count == 0


@pytest.mark.django_db(transaction=True)
async def test_revocation_that_no_layer_message_announced_still_closes_the_socket(user, channel_layer, monkeypatch):
    from notify import hub as hub_module
    from notify.models import ApiToken, hash_token

    monkeypatch.setattr(hub_module, "CREDENTIALS_CHECK_SECONDS", 0.1)
    raw = await database_sync_to_async(ApiToken.objects.issue)(user=user)
    token = await database_sync_to_async(ApiToken.objects.get)(digest=hash_token(raw))
    app = NotificationConsumer.as_asgi()

    async def with_token(scope, receive, send):
        return await app({**scope, "user": user, "notify_auth": "token", "notify_token": token}, receive, send)

    communicator = WebsocketCommunicator(with_token, "/ws/notify/")
    assert (await communicator.connect())[0]
    assert (await communicator.receive_json_from(timeout=5))["type"] == "hello"
    # Revoked in the database only (as notify_token --revoke in another process with the
    # in-memory layer): no notify.revoke message reaches this process.
    await database_sync_to_async(ApiToken.objects.filter(pk=token.pk).update)(revoked_at=timezone.now())
    output = await communicator.receive_output(timeout=5)
    assert output == {"type": "websocket.close", "code": 4401}


@pytest.mark.django_db(transaction=True)
async def test_a_deactivated_user_is_disconnected(user, channel_layer, monkeypatch):
    from notify import hub as hub_module

    monkeypatch.setattr(hub_module, "CREDENTIALS_CHECK_SECONDS", 0.1)
    communicator = await connect(user)
    user.is_active = False
    await database_sync_to_async(user.save)()
    output = await communicator.receive_output(timeout=5)
    assert output == {"type": "websocket.close", "code": 4401}


@pytest.mark.parametrize("size,header", [
    (5, b"\x81\x05"),
    (300, b"\x81\x7e\x01\x2c"),
    (70_000, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x11\x70"),
])
def test_text_frames_follow_rfc_6455_length_encoding(size, header):
    from notify.hub import text_frame

    frame = text_frame(b"x" * size)
    assert frame[: len(header)] == header
    assert len(frame) == len(header) + size
