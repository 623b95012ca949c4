"""Server-Sent Events ``GET /notify/stream/`` (docs/protocol.md §4b)."""

import asyncio
import json

import pytest
import requests
import websockets
from channels.db import database_sync_to_async

from notify import services
from notify.realtime.hub import get_hub

from .streamhelpers import HttpClient, asend, auth, get, session_cookie, wait_held

pytestmark = pytest.mark.django_db(transaction=True)


class Events:
    """Parse an SSE body (HTML Living Standard) into events and comments as they arrive."""

    def __init__(self, client: HttpClient):
        self.client = client
        self.text = ""
        self.queue: list[dict] = []

    def _parse(self) -> None:
        while "\n\n" in self.text:
            block, self.text = self.text.split("\n\n", 1)
            event = {"fields": {}, "comments": []}
            for line in block.split("\n"):
                if line.startswith(":"):
                    event["comments"].append(line[1:].strip())
                else:
                    name, _, value = line.partition(":")
                    event["fields"][name] = value[1:] if value.startswith(" ") else value
            self.queue.append(event)

    async def next(self, timeout: float = 3) -> dict:
        while not self.queue:
            self.text += (await self.client.chunk(timeout)).decode()
            self._parse()
        return self.queue.pop(0)

    async def next_event(self, timeout: float = 3) -> tuple[str, dict, dict]:
        """Return ``(event name, data, fields)`` of the next event (skipping comments)."""
        while True:
            event = await self.next(timeout)
            if "event" in event["fields"]:
                fields = event["fields"]
                return fields["event"], json.loads(fields["data"]), fields


async def open_stream(path: str, headers) -> tuple[HttpClient, Events]:
    client = HttpClient(path, headers=headers)
    await client.start()
    assert client.status == 200, await client.read_all()
    return client, Events(client)


async def test_stream_headers_and_hello_with_retry(user, token, channel_layer, settings):
    settings.NOTIFY = {"SSE_RETRY_MS": 1500, "HEARTBEAT_SECONDS": 20}
    await asend(user, title="a")
    client, events = await open_stream("/notify/stream/", auth(token))
    assert client.headers["content-type"].startswith("text/event-stream")
    assert client.headers["cache-control"] == "no-store"
    assert client.headers["x-accel-buffering"] == "no"
    name, data, fields = await events.next_event()
    assert name == "hello"
    assert fields["retry"] == "1500"
    latest = data["cursor"]
    assert data == {"cursor": latest, "unread": 1, "heartbeat": 20}
    assert fields["id"] == str(latest)  # a reconnect before any item resumes from here
    assert await client.nothing()  # live from now: no backlog
    await client.disconnect()
    assert user.pk not in get_hub().by_user


async def test_backlog_after_since_then_live_items_without_duplicates(user, other_user, token, channel_layer):
    sent = [(await asend(user, title=str(i)))[0].pk for i in range(3)]
    client, events = await open_stream(f"/notify/stream/?since={sent[0]}", auth(token))
    name, hello, fields = await events.next_event()
    assert (name, hello["cursor"], fields["id"]) == ("hello", sent[2], str(sent[0]))
    for pk in sent[1:]:
        name, item, fields = await events.next_event()
        assert (name, item["id"], fields["id"]) == ("notification", pk, str(pk))
    await wait_held(user)
    await asend(other_user, title="not yours")
    live = (await asend(user, title="live", kind="x.y"))[0].pk
    name, item, fields = await events.next_event()
    assert (name, item["id"], item["kind"], fields["id"]) == ("notification", live, "x.y", str(live))
    assert set(item) == {"id", "kind", "title", "body", "level", "url", "data", "created_at", "read", "muted"}
    assert await client.nothing()
    await client.disconnect()


async def test_last_event_id_wins_over_since(user, token, channel_layer):
    sent = [(await asend(user, title=str(i)))[0].pk for i in range(3)]
    headers = [*auth(token), (b"last-event-id", str(sent[1]).encode())]
    client, events = await open_stream(f"/notify/stream/?since={sent[0] - 1}", headers)
    assert (await events.next_event())[0] == "hello"
    name, item, _ = await events.next_event()
    assert (name, item["id"]) == ("notification", sent[2])
    assert await client.nothing()
    await client.disconnect()


async def test_announcement_is_streamed(user, token, channel_layer):
    client, events = await open_stream("/notify/stream/", auth(token))
    await events.next_event()
    await wait_held(user)
    announcement = await database_sync_to_async(services.announce)(title="All hands")
    name, item, _ = await events.next_event()
    assert (name, item["id"], item["kind"]) == ("notification", announcement.pk, "announcement")
    await client.disconnect()


async def test_read_events_for_ids_and_all(user, token, channel_layer):
    sent = [(await asend(user, title=str(i)))[0].pk for i in range(3)]
    client, events = await open_stream("/notify/stream/", auth(token))
    await events.next_event()
    await wait_held(user)
    await database_sync_to_async(services.mark_read)(user, [sent[0]])
    name, data, fields = await events.next_event()
    assert (name, data) == ("read", {"ids": [sent[0]], "unread": 2})
    assert "id" not in fields  # a read change does not move the resume position
    await database_sync_to_async(services.mark_all_read)(user)
    name, data, _ = await events.next_event()
    assert (name, data) == ("read", {"all": True, "cursor": sent[2], "unread": 0})
    await client.disconnect()


async def test_reset_past_backlog_limit(user, token, channel_layer, settings):
    settings.NOTIFY = {"BACKLOG_LIMIT": 2}
    sent = [(await asend(user, title=str(i)))[0].pk for i in range(4)]
    client, events = await open_stream(f"/notify/stream/?since={sent[0]}", auth(token))
    await events.next_event()
    name, data, fields = await events.next_event()
    assert (name, data, fields["id"]) == ("reset", {"cursor": sent[3]}, str(sent[3]))
    assert await client.nothing()
    live = (await asend(user, title="after"))[0].pk
    name, item, _ = await events.next_event()
    assert (name, item["id"]) == ("notification", live)
    await client.disconnect()


async def test_ping_comment_after_heartbeat_of_silence(user, token, channel_layer, settings):
    settings.NOTIFY = {"HEARTBEAT_SECONDS": 1}
    client, events = await open_stream("/notify/stream/", auth(token))
    await events.next_event()
    event = await events.next(timeout=4)
    assert event == {"fields": {}, "comments": ["ping"]}
    await client.disconnect()


async def test_revoked_token_ends_the_stream(user, token, channel_layer):
    client, events = await open_stream("/notify/stream/", auth(token))
    await events.next_event()
    await wait_held(user)
    await database_sync_to_async(services.revoke_token)(token)
    await client.read_all()
    assert client.complete
    await client.comm.wait(2)
    assert user.pk not in get_hub().by_user


async def test_session_cookie_authenticates(user, channel_layer):
    client, events = await open_stream("/notify/stream/", await session_cookie(user))
    assert (await events.next_event())[0] == "hello"
    await client.disconnect()


@pytest.mark.parametrize(
    "query, headers, name",
    [
        ("since=-1", [], "since"), ("since=x", [], "since"), ("since=", [], "since"),
        ("", [(b"last-event-id", b"abc")], "Last-Event-ID"),
        ("since=3", [(b"last-event-id", b"-4")], "Last-Event-ID"),
    ],
)
async def test_bad_resume_position_is_400_before_the_stream(user, token, channel_layer, query, headers, name):
    status, response_headers, body = await get(f"/notify/stream/?{query}", [*auth(token), *headers])
    assert status == 400
    assert response_headers["content-type"] == "application/json"
    assert body["error"]["code"] == "invalid_parameter"
    assert body["error"]["message"].startswith(name)


async def test_no_credentials_is_401(channel_layer, transactional_db):
    status, _, body = await get("/notify/stream/")
    assert status == 401 and body["error"]["code"] == "not_authenticated"


async def test_bad_token_is_401(channel_layer, transactional_db):
    status, _, body = await get("/notify/stream/", auth("ntk_bad"))
    assert status == 401 and body["error"]["code"] == "not_authenticated"


async def test_service_key_is_403(service_key, channel_layer):
    status, _, body = await get("/notify/stream/", auth(service_key))
    assert status == 403 and body["error"]["code"] == "forbidden"


async def test_non_get_is_405(user, token, channel_layer):
    client = HttpClient("/notify/stream/", method="DELETE", headers=auth(token))
    body = await client.json()
    assert client.status == 405 and body["error"]["code"] == "method_not_allowed"


# Against real daphne processes


def sse_ids(url: str, headers: dict, count: int) -> list[int]:
    """Read ``count`` notification ids from a streamed SSE response."""
    ids = []
    with requests.get(url, headers=headers, stream=True, timeout=15) as response:
        assert response.status_code == 200
        assert response.headers["x-accel-buffering"] == "no"
        for line in response.iter_lines(chunk_size=1, decode_unicode=True):
            if line.startswith("id: "):
                ids.append(int(line[4:]))
            if line.startswith("event: hello"):
                ids.clear()  # hello's id is the start position, not an item
            if len(ids) == count:
                return ids
    return ids


async def ws_ids(url: str, token: str, count: int) -> list[int]:
    ids = []
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        while len(ids) < count:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame["type"] == "notification":
                ids.append(frame["notification"]["id"])
    return ids


@pytest.mark.e2e
def test_resume_with_since_sees_the_same_ids_over_poll_sse_and_websocket(
    user, other_user, token, daphne_factory, manage
):
    server = daphne_factory()
    names = [user.username, other_user.username]
    ids = []
    for i in range(6):
        result = manage("notify_send", "--to", names[i % 2], "--to", user.username, "--title", f"n{i}")
        assert result.returncode == 0, result.stderr
        ids.append(int(result.stdout.split()[-1]))  # alice's id (she is named last or once)
    announced = manage("notify_announce", "--title", "everyone")
    assert announced.returncode == 0, announced.stderr
    expected_after = [*ids, int(announced.stdout.split()[-1])][2:]
    since = ids[1]
    headers = {"Authorization": f"Bearer {token}"}

    polled, cursor = [], since
    while True:
        body = requests.get(f"{server.url}/notify/poll/?since={cursor}&limit=2&timeout=0",
                            headers=headers, timeout=10).json()
        if not body["notifications"]:
            break
        polled += [item["id"] for item in body["notifications"]]
        cursor = body["cursor"]
    streamed = sse_ids(f"{server.url}/notify/stream/?since={since}", headers, len(expected_after))
    resumed = sse_ids(f"{server.url}/notify/stream/", {**headers, "Last-Event-ID": str(since)}, len(expected_after))
    socketed = asyncio.run(ws_ids(f"{server.ws_url}/ws/notify/?since={since}", token, len(expected_after)))
    assert polled == streamed == resumed == socketed == expected_after
