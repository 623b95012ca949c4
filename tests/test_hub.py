"""The process hub: entries reach connections in id order, gaps filled from the database."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.utils import timezone

from notify import services
from notify.transports.websocket import NotificationConsumer
from notify.realtime.broker import HUB_GROUP, entry_payload
from notify.realtime.hub import get_hub
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
    from notify.realtime import hub as hub_module
    from notify.models import ApiToken

    monkeypatch.setattr(hub_module, "CREDENTIALS_CHECK_SECONDS", 0.1)
    raw = await database_sync_to_async(ApiToken.objects.issue)(user=user)
    token = await database_sync_to_async(ApiToken.objects.get)(hint=raw[:10])
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
    from notify.realtime import hub as hub_module

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
    from notify.realtime.frames import text_frame

    frame = text_frame(b"x" * size)
    assert frame[: len(header)] == header
    assert len(frame) == len(header) + size


# Issue 9: the two loss paths and the order race, each driven deterministically.


@database_sync_to_async
def store_burnt_announcement_personal(user, other):
    """Burn an id N (stored, then gone: a rolled-back send), then store an announcement
    N+1 and a personal item N+2 of ``user``, pushing none of them."""
    from notify.models import Announcement

    burnt = Notification.objects.create(recipient=other, title="burnt")
    burnt_id = burnt.pk
    burnt.delete()
    announcement = Announcement.objects.create(title="to everyone")
    personal = Notification.objects.create(recipient=user, title="only you")
    assert burnt_id < announcement.pk < personal.pk
    return announcement, personal


async def received_ids(communicator, count):
    frames = [await communicator.receive_json_from(timeout=5) for _ in range(count)]
    assert all(f["type"] == "notification" for f in frames), frames
    return [f["notification"]["id"] for f in frames]


@pytest.mark.django_db(transaction=True)
async def test_an_announcement_and_a_later_personal_item_released_together_both_arrive(
    user, other_user, channel_layer
):
    communicator = await connect(user)
    announcement, personal = await store_burnt_announcement_personal(user, other_user)
    # Both pushes reach the hub while it still waits for the burnt id.
    await channel_layer.group_send(HUB_GROUP, {"type": "notify.entries", "entries": [entry_payload(announcement)]})
    await channel_layer.group_send(HUB_GROUP, {"type": "notify.entries", "entries": [entry_payload(personal)]})
    assert await received_ids(communicator, 2) == [announcement.pk, personal.pk]
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


class FlakyLayer:
    """An in-memory channel layer that can be broken (every call raises) and mended;
    ``on_join`` runs after each successful ``group_add`` (e.g. to queue a live push that
    arrives right after the layer is back)."""

    def __init__(self):
        from channels.layers import InMemoryChannelLayer

        self.inner = InMemoryChannelLayer(capacity=10_000)
        self.broken = asyncio.Event()
        self.on_join = None

    def _check(self):
        if self.broken.is_set():
            raise ConnectionError("channel layer down")

    async def new_channel(self, prefix="specific."):
        self._check()
        return await self.inner.new_channel(prefix)

    async def group_add(self, group, channel):
        self._check()
        await self.inner.group_add(group, channel)
        if self.on_join is not None:
            await self.on_join(channel)

    async def group_discard(self, group, channel):
        await self.inner.group_discard(group, channel)

    async def group_send(self, group, message):
        self._check()
        await self.inner.group_send(group, message)

    async def receive(self, channel):
        self._check()
        get = asyncio.ensure_future(self.inner.receive(channel))
        broken = asyncio.ensure_future(self.broken.wait())
        await asyncio.wait({get, broken}, return_when=asyncio.FIRST_COMPLETED)
        broken.cancel()
        if get.done():
            return get.result()
        get.cancel()
        raise ConnectionError("channel layer down")


@pytest.mark.django_db(transaction=True)
async def test_catch_up_after_an_outage_loses_nothing_when_a_live_push_comes_first(
    user, make_user, settings, monkeypatch
):
    from notify.realtime import hub as hub_module

    settings.NOTIFY = {"DB_TAIL_SECONDS": 0}  # the catch-up, not the tail, must do it
    layer = FlakyLayer()
    monkeypatch.setattr(hub_module, "get_channel_layer", lambda alias=None: layer)
    # Idle connections of other users registered first: whatever the hub does after the
    # outage, it must not reach this user only after a live push did.
    idle = [await connect(await database_sync_to_async(make_user)(f"idle{i}")) for i in range(24)]
    communicator = await connect(user)

    layer.broken.set()  # Redis goes away
    await asyncio.sleep(0.05)
    missed, live = await store_without_push(user, "sent during the outage", "sent just after")

    async def live_push_first(channel):
        layer.on_join = None
        await layer.inner.send(channel, {"type": "notify.entries", "entries": [entry_payload(live)]})

    layer.on_join = live_push_first
    layer.broken.clear()  # Redis is back; the hub re-subscribes within its backoff
    assert await received_ids(communicator, 2) == [missed.pk, live.pk]
    assert await communicator.receive_nothing(timeout=0.3)
    for other in [communicator, *idle]:
        await other.disconnect()


class Gate:
    """Hold a transport's first stream read until ``open()``: ``reading`` is set once
    the read has started (the connection is registered with the hub by then)."""

    def __init__(self, real):
        self.real = real
        self.reading = asyncio.Event()
        self.gate = asyncio.Event()

    async def __call__(self, *args, **kwargs):
        self.reading.set()
        await self.gate.wait()
        return await self.real(*args, **kwargs)

    def open(self):
        self.gate.set()


@pytest.mark.django_db(transaction=True)
async def test_a_read_change_never_overtakes_hello(user, channel_layer, monkeypatch):
    from notify.transports import websocket

    gate = Gate(websocket.aread_stream)
    monkeypatch.setattr(websocket, "aread_stream", gate)
    communicator = WebsocketCommunicator(as_user(NotificationConsumer.as_asgi(), user), "/ws/notify/")
    assert (await communicator.connect())[0]
    await asyncio.wait_for(gate.reading.wait(), 5)
    # Another tab marks everything read while this connection reads its backlog.
    await channel_layer.group_send(
        HUB_GROUP, {"type": "notify.read", "user": user.pk, "all": True, "cursor": 0, "unread": 0}
    )
    await asyncio.sleep(0.1)
    gate.open()
    first = await communicator.receive_json_from(timeout=5)
    assert first["type"] == "hello"
    assert (await communicator.receive_json_from(timeout=5))["type"] == "read"
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_read_change_never_overtakes_the_sse_response_headers(user, channel_layer, monkeypatch):
    from notify.transports import sse as streams

    from .streamhelpers import HttpClient, session_cookie

    gate = Gate(streams.aread_stream)
    monkeypatch.setattr(streams, "aread_stream", gate)
    client = HttpClient("/notify/stream/", headers=await session_cookie(user))
    await client.comm.send_input({"type": "http.request", "body": b""})
    await asyncio.wait_for(gate.reading.wait(), 5)
    await channel_layer.group_send(
        HUB_GROUP, {"type": "notify.read", "user": user.pk, "ids": [1], "unread": 0}
    )
    await asyncio.sleep(0.1)
    gate.open()
    await client.start()
    assert client.status == 200
    body = (await client.chunk()).decode()
    assert body.startswith("retry: ") and "event: hello" in body.split("\n\n")[0]
    events = body
    while "event: read" not in events:
        events += (await client.chunk()).decode()
    assert events.index("event: hello") < events.index("event: read")
    await client.disconnect()
