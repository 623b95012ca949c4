"""Mark-read requests are rate-limited per user (CLIENT_RATE_LIMIT), on every transport."""

import pytest
from channels.db import database_sync_to_async
from django.core.cache import cache

from notify import services

from .test_hub import connect


@pytest.fixture
def tight_limit(settings):
    settings.NOTIFY = {"CLIENT_RATE_LIMIT": "2/m"}
    cache.clear()
    yield
    cache.clear()


@pytest.mark.django_db(transaction=True)
async def test_websocket_read_frames_past_the_limit_get_a_rate_limited_error(user, channel_layer, tight_limit):
    sent, _ = await database_sync_to_async(services.send)(user, title="one")
    communicator = await connect(user)
    await communicator.send_json_to({"type": "read", "ids": [sent[0].pk]})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "read"
    await communicator.send_json_to({"type": "read", "ids": [sent[0].pk]})  # second: allowed, no change
    await communicator.send_json_to({"type": "read_all"})  # third: over the limit
    error = await communicator.receive_json_from(timeout=5)
    assert error["type"] == "error" and error["code"] == "rate_limited"
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
def test_http_mark_read_past_the_limit_is_429_with_retry_after(client, user, tight_limit):
    client.force_login(user)
    for _ in range(2):
        assert client.post("/notify/api/notifications/read/", {"all": True},
                           content_type="application/json").status_code == 200
    answer = client.post("/notify/api/notifications/read/", {"all": True}, content_type="application/json")
    assert answer.status_code == 429
    assert answer.json()["error"]["code"] == "rate_limited"
    assert int(answer["Retry-After"]) >= 1
