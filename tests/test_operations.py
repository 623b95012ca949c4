"""Issue 13: what an operator relies on. ``healthz``/``readyz`` follow the database and
the channel layer, ``metrics`` is off without a token and needs it otherwise, every
listed metric moves when its event happens, log lines are JSON on demand, and a drain
tells each transport to reconnect elsewhere."""

import asyncio
import json

import pytest
import requests
from channels.testing import WebsocketCommunicator
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from notify import drain
from notify.logging import log_fields, logging_config

from .streamhelpers import HttpClient, application, auth, session_cookie, wait_held

pytestmark = [pytest.mark.django_db(transaction=True)]

BOUND = 30  # seconds a condition below may take to come true, at most


def scrape(server, token: str) -> dict[str, float]:
    """Return the metrics of ``server`` as ``{'name{label="value",...}': value}``,
    parsed by prometheus_client's own parser."""
    answer = requests.get(f"{server.url}/notify/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def json_lines(text: str) -> list[dict]:
    """The log lines of ``text`` that are JSON objects."""
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                pass
    return lines


def until(predicate, what: str, bound: float = BOUND):
    import time

    deadline = time.monotonic() + bound
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {bound} s: {what}"
        time.sleep(0.1)


def readyz(server):
    answer = requests.get(f"{server.url}/notify/readyz", timeout=10)
    return answer.status_code, answer.json()


@pytest.mark.e2e
@pytest.mark.redis
def test_healthz_and_readyz_follow_the_channel_layer(daphne_factory, own_redis, token):
    server = daphne_factory(redis_url=own_redis.url, NOTIFY_METRICS_TOKEN="m")
    answer = requests.get(f"{server.url}/notify/healthz", timeout=10)
    assert answer.status_code == 200 and answer.json() == {"alive": True}
    assert answer.headers["Cache-Control"].startswith("max-age=0")
    assert readyz(server) == (200, {"ready": True, "down": []})

    # No connection open (nobody listens): the probe sees Redis go and come back.
    own_redis.stop()
    assert readyz(server) == (503, {"ready": False, "down": ["channel_layer"]})
    assert requests.get(f"{server.url}/notify/healthz", timeout=10).status_code == 200
    assert scrape(server, "m")["notify_channel_layer_up"] == 0
    own_redis.start()
    until(lambda: readyz(server)[0] == 200, "ready again")

    # A connection open: the hub's own subscription is the truth; the catch-up counts.
    async def with_a_connection():
        async with connect(f"{server.ws_url}/ws/notify/", additional_headers={"Authorization": f"Bearer {token}"}):
            await asyncio.to_thread(until, lambda: readyz(server)[0] == 200, "ready with a connection")
            resyncs = scrape(server, "m")["notify_resyncs_total"]
            own_redis.stop()
            await asyncio.to_thread(until, lambda: readyz(server) == (503, {"ready": False, "down": ["channel_layer"]}),
                                    "503 naming the layer")
            own_redis.start()
            await asyncio.to_thread(until, lambda: readyz(server)[0] == 200, "ready after the outage")
            assert scrape(server, "m")["notify_resyncs_total"] == resyncs + 1
            assert scrape(server, "m")["notify_channel_layer_up"] == 1

    asyncio.run(with_a_connection())


@pytest.mark.e2e
def test_metrics_are_off_without_a_token_and_need_it_otherwise(daphne_factory):
    off = daphne_factory()
    answer = requests.get(f"{off.url}/notify/metrics", headers={"Authorization": "Bearer x"}, timeout=10)
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"

    on = daphne_factory(NOTIFY_METRICS_TOKEN="s3cret")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
        answer = requests.get(f"{on.url}/notify/metrics", headers=headers, timeout=10)
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "not_authenticated"
    samples = scrape(on, "s3cret")
    for name in ('notify_connections{transport="websocket"}', 'notify_connections{transport="sse"}',
                 'notify_connections{transport="longpoll"}', 'notify_handshakes_total{result="accepted"}',
                 'notify_handshakes_total{result="refused_auth"}', 'notify_handshakes_total{result="refused_origin"}',
                 'notify_handshakes_total{result="refused_overload"}', 'notify_entries_total{kind="personal"}',
                 'notify_entries_total{kind="announcement"}', 'notify_deliveries_total{transport="websocket"}',
                 "notify_delivery_latency_seconds_count", "notify_hub_gap_fills_total", "notify_resyncs_total",
                 "notify_slow_clients_dropped_total", "notify_channel_layer_up"):
        assert name in samples, name


@pytest.mark.e2e
async def test_each_metric_moves_when_its_event_happens(daphne_factory, user, token, service_key, manage):
    server = daphne_factory(NOTIFY_METRICS_TOKEN="m")
    before = await asyncio.to_thread(scrape, server, "m")
    bearer = {"Authorization": f"Bearer {token}"}

    def moved(name):
        return after.get(name, 0) - before.get(name, 0)

    with pytest.raises(InvalidStatus):
        await connect(f"{server.ws_url}/ws/notify/", additional_headers={"Authorization": "Bearer nope"})
    cookie = dict([(await session_cookie(user))[0]])
    with pytest.raises(InvalidStatus):
        await connect(f"{server.ws_url}/ws/notify/", origin="http://evil.example",
                      additional_headers={"Cookie": cookie[b"cookie"].decode()})
    async with connect(f"{server.ws_url}/ws/notify/", additional_headers=bearer) as ws:
        hello = json.loads(await ws.recv())
        stream = await asyncio.to_thread(requests.get, f"{server.url}/notify/stream/", headers=bearer, stream=True,
                                         timeout=10)
        poll = asyncio.ensure_future(asyncio.to_thread(
            requests.get, f"{server.url}/notify/poll/?since={hello['cursor']}&timeout=30", headers=bearer, timeout=40))
        await asyncio.to_thread(until, lambda: scrape(server, "m")['notify_connections{transport="longpoll"}'] == 1,
                                "the poll is held")
        after = await asyncio.to_thread(scrape, server, "m")
        assert after['notify_connections{transport="websocket"}'] == 1
        assert after['notify_connections{transport="sse"}'] == 1
        sent = await asyncio.to_thread(requests.post, f"{server.url}/notify/api/send/", timeout=10,
                                       json={"recipients": [user.pk], "title": "hi"},
                                       headers={"Authorization": f"Bearer {service_key}"})
        assert sent.status_code == 201
        assert (await poll).status_code == 200
        while json.loads(await ws.recv())["type"] != "notification":
            pass
        await asyncio.to_thread(until, lambda: scrape(server, "m")['notify_deliveries_total{transport="sse"}']
                                > before['notify_deliveries_total{transport="sse"}'], "the SSE event is written")
        stream.close()
        # Another process stores an item: on the in-memory layer only the database
        # tail brings it here, through a gap fill.
        result = await asyncio.to_thread(manage, "notify_send", "--to", user.username, "--title", "from cron")
        assert result.returncode == 0, result.stderr
        while json.loads(await ws.recv())["type"] != "notification":
            pass
        announced = await asyncio.to_thread(requests.post, f"{server.url}/notify/api/announce/", timeout=10,
                                            json={"title": "all"}, headers={"Authorization": f"Bearer {service_key}"})
        assert announced.status_code == 201
        after = await asyncio.to_thread(scrape, server, "m")
    assert moved('notify_handshakes_total{result="accepted"}') == 1
    assert moved('notify_handshakes_total{result="refused_auth"}') == 1
    assert moved('notify_handshakes_total{result="refused_origin"}') == 1
    assert moved('notify_entries_total{kind="personal"}') == 1  # the cron one was stored elsewhere
    assert moved('notify_entries_total{kind="announcement"}') == 1
    assert moved('notify_deliveries_total{transport="websocket"}') >= 2
    assert moved('notify_deliveries_total{transport="sse"}') >= 1
    assert moved('notify_deliveries_total{transport="longpoll"}') == 1
    assert moved("notify_delivery_latency_seconds_count") >= 3
    assert moved("notify_hub_gap_fills_total") >= 1
    assert moved('notify_api_requests_total{endpoint="send",status="201"}') == 1
    assert moved('notify_api_requests_total{endpoint="announce",status="201"}') == 1
    assert after["notify_channel_layer_up"] == 1
    await asyncio.to_thread(until, lambda: scrape(server, "m")['notify_connections{transport="websocket"}'] == 0,
                            "the WebSocket left")


@pytest.mark.e2e
async def test_log_lines_are_json_with_the_event_and_its_context(daphne_factory):
    server = daphne_factory(NOTIFY_LOG_FORMAT="json")
    with pytest.raises(InvalidStatus):
        await connect(f"{server.ws_url}/ws/notify/", additional_headers={"Authorization": "Bearer nope"})
    line = await asyncio.to_thread(
        until, lambda: next((x for x in json_lines(server.logs()) if x.get("event") == "websocket.refused"), None),
        "the refusal is logged")
    assert line["level"] == "WARNING" and line["logger"] == "notify"
    assert line["transport"] == "websocket" and line["reason"] == "no valid credentials"
    assert line["client"].startswith("127.0.0.1:") and isinstance(line["connection_id"], int)
    assert "timestamp" in line and "WebSocket refused" in line["message"]


def test_log_format_is_checked():
    assert logging_config("json")["formatters"]["notify"]["()"] == "pythonjsonlogger.json.JsonFormatter"
    with pytest.raises(ValueError, match="text, json"):
        logging_config("xml")
    assert log_fields("x.y", count=3) == {"event": "x.y", "count": 3}


@pytest.fixture
def draining(settings, channel_layer):
    settings.NOTIFY = {**settings.NOTIFY, "DRAIN_SECONDS": 0.5}
    yield
    drain.reset()


async def test_a_drain_tells_every_transport_to_reconnect_with_its_cursor(draining, user, token):
    """In-process: WebSocket close 1012 with the delay, SSE ``reconnect``, a held poll
    answered with its cursor; readyz 503 ``draining``."""
    headers = auth(token)
    ws = WebsocketCommunicator(application(), "/ws/notify/", headers=headers)
    assert (await ws.connect())[0]
    hello = await ws.receive_json_from()
    sse = HttpClient("/notify/stream/?since=0", headers=headers)
    await sse.start()
    await sse.chunk()  # hello
    poll = HttpClient(f"/notify/poll/?since={hello['cursor']}&timeout=30", headers=headers)
    await poll.comm.send_input({"type": "http.request", "body": b""})  # held: no answer yet
    await wait_held(user, 3)

    task = drain.start()
    from django.test import AsyncClient

    answer = await AsyncClient().get("/notify/readyz")
    assert answer.status_code == 503 and "draining" in answer.json()["down"]

    close = await ws.receive_output(3)
    assert close["type"] == "websocket.close" and close["code"] == 1012
    assert 0 <= json.loads(close["reason"])["reconnect_ms"] < 500
    body = (await sse.read_all()).decode()
    assert body.endswith("\n\n") and "event: reconnect" in body and "retry: " in body
    reconnect = json.loads(body.split("event: reconnect\ndata: ")[1].split("\n")[0])
    assert 0 <= reconnect["reconnect_ms"] < 500
    start = await poll.comm.receive_output(3)
    assert start["status"] == 200
    answer = json.loads((await poll.comm.receive_output(3))["body"])
    assert answer["cursor"] == hello["cursor"] and answer["notifications"] == []
    assert 0 <= answer["reconnect_ms"] < 500
    await asyncio.wait_for(task, 5)

