"""docs/protocol.md §8: with the channel layer (Redis) down, handshakes, polls and sends still
succeed from the database, and items sent meanwhile reach connected clients once the
layer is back."""

import asyncio
import json

import pytest
import requests
from websockets.asyncio.client import connect

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


async def frame(ws, timeout=5):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def test_layer_outage_serves_from_the_database_and_catches_up(
    daphne_factory, own_redis, token, service_key, other_user, manage
):
    server = daphne_factory(redis_url=own_redis.url)
    headers = {"Authorization": f"Bearer {token}"}
    async with connect(f"{server.ws_url}/ws/notify/?since=0", additional_headers=headers) as ws:
        assert (await frame(ws))["type"] == "hello"
        own_redis.stop()

        # Sending still works (stored; the push is logged as failed, not raised).
        result = manage("notify_send", "--to", "alice", "--title", "sent while Redis is down",
                        redis_url=own_redis.url)
        assert result.returncode == 0, result.stderr
        sent_id = int(result.stdout.split()[-1])

        # A new handshake succeeds and replays it from the database.
        async with connect(f"{server.ws_url}/ws/notify/?since=0", additional_headers=headers) as second:
            assert (await frame(second, timeout=10))["type"] == "hello"
            replay = await frame(second)
            assert replay["notification"]["id"] == sent_id

        # Long-poll answers from the database, and the service API stores without 500.
        poll = requests.get(f"{server.url}/notify/poll/?since=0&timeout=0", headers=headers, timeout=10)
        assert poll.status_code == 200
        assert [item["id"] for item in poll.json()["notifications"]] == [sent_id]
        sent = requests.post(f"{server.url}/notify/api/send/", json={"recipients": ["bob"], "title": "t"},
                             headers={"Authorization": f"Bearer {service_key}"}, timeout=10)
        assert sent.status_code == 201, sent.text

        # The layer comes back: the connected client gets what it missed, once.
        own_redis.start()
        caught_up = await frame(ws, timeout=20)
        while caught_up["type"] == "ping":
            caught_up = await frame(ws, timeout=20)
        assert caught_up["type"] == "notification"
        assert caught_up["notification"]["id"] == sent_id
