"""Issue 9 end to end: the two loss paths, the order race, and the database tail, each
against a real daphne with real clients (``websockets``, ``requests``).

What a user checks: every item of their stream reaches an open connection, in order,
once, and ``hello`` is the first frame.
"""

import asyncio
import json
import time

import pytest
import requests
from channels.db import database_sync_to_async
from django.db import transaction
from websockets.asyncio.client import connect

from notify import services


pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TIMEOUT = 10


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


async def frame(ws, timeout=TIMEOUT) -> dict:
    """The next frame that is not a heartbeat."""
    while True:
        value = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if value["type"] != "ping":
            return value


async def notification_ids(ws, count, timeout=TIMEOUT) -> list[int]:
    ids = []
    while len(ids) < count:
        value = await frame(ws, timeout)
        assert value["type"] == "notification", value
        ids.append(value["notification"]["id"])
    return ids


async def nothing_more(ws, seconds=0.5) -> bool:
    try:
        value = await frame(ws, seconds)
    except (asyncio.TimeoutError, TimeoutError):
        return True
    raise AssertionError(f"unexpected frame {value}")


@pytest.fixture
def redis_layer(settings, own_redis):
    """This test process publishes to the same Redis as the daphne under test."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": own_redis.url, "socket_timeout": 15}], "capacity": 10_000},
        }
    }
    return own_redis


@pytest.mark.redis
@pytest.mark.postgres
async def test_an_announcement_then_a_personal_item_after_a_burnt_id_both_arrive(
    postgres, daphne_factory, redis_layer, user, other_user, token
):
    """Path 1: a rolled-back send uses up id N; an announcement N+1 and a personal N+2
    reach the hub while it still waits for N."""
    server = daphne_factory(redis_url=redis_layer.url)
    async with connect(f"{server.ws_url}/ws/notify/", additional_headers=bearer(token)) as ws:
        assert (await frame(ws))["type"] == "hello"

        def burn_then_send():
            try:
                with transaction.atomic():
                    services.send(other_user, title="rolled back")
                    raise RuntimeError("abort")
            except RuntimeError:
                pass
            announcement = services.announce(title="to everyone")
            personal, _ = services.send(user, title="only alice")
            return announcement.pk, personal[0].pk

        announcement_id, personal_id = await database_sync_to_async(burn_then_send)()
        assert await notification_ids(ws, 2) == [announcement_id, personal_id]
        assert await nothing_more(ws)


@pytest.mark.redis
async def test_an_item_sent_during_a_layer_outage_reaches_the_client_before_later_ones(
    daphne_factory, own_redis, make_user, user, token, service_key, manage
):
    """Path 2: Redis is killed, an item X is stored (its push is lost), Redis comes back
    and sends follow every 150 ms; idle connections of other users share the process."""
    server = daphne_factory(redis_url=own_redis.url)
    idle_tokens = []
    for i in range(30):
        from notify.models import ApiToken

        idle = await database_sync_to_async(make_user)(f"idle{i}")
        idle_tokens.append(await database_sync_to_async(ApiToken.objects.issue)(user=idle, name="idle"))
    idle_sockets = [
        await connect(f"{server.ws_url}/ws/notify/", additional_headers=bearer(t)) for t in idle_tokens
    ]
    try:
        async with connect(f"{server.ws_url}/ws/notify/", additional_headers=bearer(token)) as ws:
            assert (await frame(ws))["type"] == "hello"
            own_redis.stop()
            result = await asyncio.to_thread(
                manage, "notify_send", "--to", "alice", "--title", "during the outage", redis_url=own_redis.url
            )
            assert result.returncode == 0, result.stderr
            missed = int(result.stdout.split()[-1])
            own_redis.start()
            sent = []
            for i in range(5):
                answer = await asyncio.to_thread(
                    requests.post, f"{server.url}/notify/api/send/",
                    json={"recipients": ["alice"], "title": f"after {i}"}, headers=bearer(service_key), timeout=10,
                )
                assert answer.status_code == 201, answer.text
                sent.append(answer.json()["ids"][0])
                await asyncio.sleep(0.15)
            assert await notification_ids(ws, 6, timeout=20) == [missed, *sent]
            assert await nothing_more(ws)
    finally:
        for idle in idle_sockets:
            await idle.close()


async def test_hello_is_the_first_frame_while_the_user_marks_items_read(daphne_factory, user, token):
    """The order race: ``read`` changes keep coming while new connections open."""
    server = daphne_factory()
    ids = [n.pk for n in (await database_sync_to_async(services.send)(user, title="x"))[0]]
    ids += [n.pk for n in (await database_sync_to_async(services.send)(user, title="y"))[0]]
    stop = asyncio.Event()

    async def mark_read_continuously():
        while not stop.is_set():
            for path, body in (("read/", {"ids": ids}), ("read/", {"all": True})):
                await asyncio.to_thread(
                    requests.post, f"{server.url}/notify/api/notifications/{path}", json=body,
                    headers=bearer(token), timeout=10,
                )
            # Unread again, so the next read is a change that is published.
            await database_sync_to_async(_unread_again)(user)

    marker = asyncio.ensure_future(mark_read_continuously())
    try:
        for _ in range(15):
            async with connect(f"{server.ws_url}/ws/notify/?since=0", additional_headers=bearer(token)) as ws:
                first = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
                assert first["type"] == "hello", first
            answer = await asyncio.to_thread(
                requests.get, f"{server.url}/notify/stream/?since=0", headers=bearer(token), stream=True, timeout=10
            )
            assert answer.status_code == 200
            first_event = next(answer.iter_lines(decode_unicode=True, delimiter="\n\n"))
            answer.close()
            assert "event: hello" in first_event, first_event
    finally:
        stop.set()
        await marker
    assert "delivery failed" not in server.logs()


def _unread_again(user):
    from notify.models import Receipt, StreamState

    Receipt.objects.filter(user=user).delete()
    StreamState.objects.filter(user=user).delete()


async def test_a_send_from_another_process_reaches_open_clients_on_the_default_layer(
    daphne_factory, user, token, manage
):
    """Item 4: with the in-memory layer, ``manage.py notify_send`` in a separate process
    reaches an open WebSocket and a held long-poll within DB_TAIL_SECONDS + 1 s."""
    tail = 1.0  # the in-memory layer's default DB_TAIL_SECONDS
    server = daphne_factory()  # no REDIS_URL: the embedded default
    async with connect(f"{server.ws_url}/ws/notify/", additional_headers=bearer(token)) as ws:
        hello = await frame(ws)
        poll = asyncio.ensure_future(asyncio.to_thread(
            requests.get, f"{server.url}/notify/poll/?since={hello['cursor']}&timeout=30",
            headers=bearer(token), timeout=40,
        ))
        await asyncio.sleep(0.5)  # the poll is held
        result = await asyncio.to_thread(manage, "notify_send", "--to", "alice", "--title", "from cron")
        assert result.returncode == 0, result.stderr
        sent = int(result.stdout.split()[-1])
        stored_at = time.monotonic()
        assert await notification_ids(ws, 1, timeout=tail + 1) == [sent]
        answer = await asyncio.wait_for(poll, tail + 1 - (time.monotonic() - stored_at) + 0.5)
        assert answer.status_code == 200
        assert [item["id"] for item in answer.json()["notifications"]] == [sent]
