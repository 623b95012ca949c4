"""Long-poll ``GET /notify/poll/`` (docs/protocol.md §4)."""

import asyncio
import json
import time

import pytest
import requests
from channels.db import database_sync_to_async

from notify import services
from notify.realtime.hub import get_hub
from notify.models import ApiToken

from .streamhelpers import HttpClient, asend, auth, get, session_cookie, wait_held

pytestmark = pytest.mark.django_db(transaction=True)


async def test_without_since_answers_cursor_and_unread_without_items(user, token, channel_layer):
    sent = await asend(user, title="one")
    await asend(user, title="two")
    status, headers, body = await get("/notify/poll/", auth(token))
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    assert body == {"cursor": sent[0].pk + 1, "unread": 2, "notifications": []}


async def test_empty_stream_has_cursor_zero(user, token, channel_layer):
    status, _, body = await get("/notify/poll/", auth(token))
    assert (status, body) == (200, {"cursor": 0, "unread": 0, "notifications": []})


async def test_backlog_after_since_answers_at_once_oldest_first(user, token, channel_layer):
    sent = [n.pk for n in [*await asend(user, title="a"), *await asend(user, title="b"), *await asend(user, title="c")]]
    status, _, body = await get(f"/notify/poll/?since={sent[0]}", auth(token))
    assert status == 200
    assert [item["id"] for item in body["notifications"]] == sent[1:]
    assert body["cursor"] == sent[2]
    assert body["unread"] == 3
    item = body["notifications"][0]
    assert set(item) == {"id", "kind", "title", "body", "level", "url", "data", "created_at", "read", "muted"}
    assert item["title"] == "b" and item["read"] is False and item["data"] == {}


async def test_limit_pages_through_backlog_with_the_cursor(user, token, channel_layer):
    sent = [(await asend(user, title=str(i)))[0].pk for i in range(5)]
    seen, cursor = [], 0
    for _ in range(3):
        _, _, body = await get(f"/notify/poll/?since={cursor}&limit=2&timeout=0", auth(token))
        seen += [item["id"] for item in body["notifications"]]
        cursor = body["cursor"]
    assert seen == sent
    assert cursor == sent[-1]


async def test_timeout_zero_answers_at_once_with_old_cursor(user, token, channel_layer):
    await asend(user, title="a")
    status, _, body = await get("/notify/poll/?since=999999&timeout=0", auth(token))
    assert (status, body["cursor"], body["notifications"]) == (200, 999999, [])


async def test_held_poll_is_released_by_a_send(user, other_user, token, channel_layer):
    first = (await asend(user, title="old"))[0].pk
    poll = HttpClient(f"/notify/poll/?since={first}&timeout=30", headers=auth(token))
    await poll.comm.send_input({"type": "http.request", "body": b""})
    await wait_held(user)
    assert await poll.nothing()
    await asend(other_user, title="not yours")
    assert await poll.nothing()
    new = (await asend(user, title="new", data={"k": 1}))[0].pk
    body = await poll.json()
    assert poll.status == 200
    assert poll.headers["cache-control"] == "no-store"
    assert body["cursor"] == new
    assert [item["id"] for item in body["notifications"]] == [new]
    assert body["notifications"][0]["data"] == {"k": 1}
    assert body["unread"] == 2  # the unread count at the start plus the new item
    await poll.comm.wait(2)  # the consumer ends once the answer is out
    assert user.pk not in get_hub().by_user


async def test_held_poll_is_released_by_an_announcement(user, token, channel_layer):
    poll = HttpClient("/notify/poll/?since=0&timeout=30", headers=auth(token))
    await poll.comm.send_input({"type": "http.request", "body": b""})
    await wait_held(user)
    announcement = await database_sync_to_async(services.announce)(title="Maintenance")
    body = await poll.json()
    assert [item["id"] for item in body["notifications"]] == [announcement.pk]
    assert body["notifications"][0]["kind"] == "announcement"


async def test_poll_times_out_with_old_cursor_and_no_items(user, token, channel_layer):
    since = (await asend(user, title="a"))[0].pk
    started = time.monotonic()
    status, headers, body = await get(f"/notify/poll/?since={since}&timeout=1", auth(token), timeout=5)
    assert time.monotonic() - started >= 0.9
    assert status == 200 and headers["cache-control"] == "no-store"
    assert body == {"cursor": since, "unread": 1, "notifications": []}
    assert user.pk not in get_hub().by_user


async def test_client_disconnect_unregisters_held_poll(user, token, channel_layer):
    poll = HttpClient("/notify/poll/?since=0&timeout=30", headers=auth(token))
    await poll.comm.send_input({"type": "http.request", "body": b""})
    await wait_held(user)
    await poll.disconnect()
    assert user.pk not in get_hub().by_user


async def test_revoked_token_releases_held_poll_with_401(user, token, channel_layer):
    poll = HttpClient("/notify/poll/?since=0&timeout=30", headers=auth(token))
    await poll.comm.send_input({"type": "http.request", "body": b""})
    await wait_held(user)
    await database_sync_to_async(services.revoke_token)(token)
    body = await poll.json()
    assert poll.status == 401
    assert body["error"]["code"] == "not_authenticated"


async def test_session_cookie_authenticates(user, channel_layer):
    await asend(user, title="a")
    status, _, body = await get("/notify/poll/?since=0&timeout=0", await session_cookie(user))
    assert status == 200 and len(body["notifications"]) == 1


@pytest.mark.parametrize(
    "query, name",
    [
        ("since=-1", "since"), ("since=abc", "since"), ("since=", "since"), ("since=1.5", "since"),
        ("timeout=56", "timeout"), ("timeout=-1", "timeout"), ("timeout=x", "timeout"),
        ("limit=0", "limit"), ("limit=501", "limit"), ("limit=ten", "limit"),
    ],
)
async def test_bad_parameters_are_400_naming_the_parameter(user, token, channel_layer, query, name):
    status, headers, body = await get(f"/notify/poll/?{query}", auth(token))
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert body["error"]["code"] == "invalid_parameter"
    assert body["error"]["message"].startswith(name)


async def test_bounds_are_accepted(user, token, channel_layer):
    for query in ("since=0&timeout=0&limit=1", "since=0&timeout=0&limit=500", "timeout=55"):
        status, _, _ = await get(f"/notify/poll/?{query}", auth(token))
        assert status == 200


async def test_no_credentials_is_401(channel_layer, transactional_db):
    status, _, body = await get("/notify/poll/?since=0")
    assert status == 401 and body["error"]["code"] == "not_authenticated"


async def test_bad_token_is_401(channel_layer, transactional_db):
    status, _, body = await get("/notify/poll/", auth("ntk_nope"))
    assert status == 401 and body["error"]["code"] == "not_authenticated"


async def test_inactive_users_token_is_401(user, token, channel_layer):
    user.is_active = False
    await database_sync_to_async(user.save)()
    status, _, body = await get("/notify/poll/", auth(token))
    assert status == 401


async def test_service_key_is_403_forbidden(service_key, channel_layer):
    status, _, body = await get("/notify/poll/", auth(service_key))
    assert status == 403 and body["error"]["code"] == "forbidden"


async def test_non_get_is_405(user, token, channel_layer):
    client = HttpClient("/notify/poll/", method="POST", headers=auth(token))
    body = await client.json()
    assert client.status == 405
    assert client.headers["allow"] == "GET"
    assert body["error"]["code"] == "method_not_allowed"


@pytest.mark.e2e
@pytest.mark.redis
def test_poll_on_one_daphne_released_by_command_while_sse_on_another_gets_it(
    user, token, daphne_factory, manage, redis_url
):
    """Process A holds a poll, process B streams SSE, a third process sends."""
    a, b = daphne_factory(redis_url=redis_url), daphne_factory(redis_url=redis_url)
    headers = {"Authorization": f"Bearer {token}"}
    cursor = requests.get(f"{a.url}/notify/poll/", headers=headers, timeout=10).json()["cursor"]
    stream = requests.get(f"{b.url}/notify/stream/", headers=headers, stream=True, timeout=30)
    assert stream.status_code == 200
    lines = stream.iter_lines(decode_unicode=True)
    assert next(lines).startswith("retry:")  # hello is out: B's stream is registered

    async def poll_and_send():
        loop = asyncio.get_running_loop()
        poll = loop.run_in_executor(
            None, lambda: requests.get(f"{a.url}/notify/poll/?since={cursor}&timeout=30", headers=headers, timeout=40)
        )
        done, _ = await asyncio.wait({poll}, timeout=1.0)
        assert not done, "the poll must be held"
        sent = await loop.run_in_executor(
            None, lambda: manage("notify_send", "--to", user.username, "--title", "cross", redis_url=redis_url)
        )
        assert sent.returncode == 0, sent.stderr
        return await asyncio.wait_for(poll, 15), int(sent.stdout.split()[-1])

    response, sent_id = asyncio.run(poll_and_send())
    assert response.status_code == 200
    body = response.json()
    assert [item["id"] for item in body["notifications"]] == [sent_id]
    assert body["cursor"] == sent_id
    event = {}
    for line in lines:
        if line.startswith("event: notification"):
            event["seen"] = True
        elif line.startswith("data: ") and event.get("seen"):
            assert json.loads(line[6:])["id"] == sent_id
            break
    else:
        pytest.fail("SSE stream ended without the item")
    stream.close()
