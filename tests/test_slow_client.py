"""A client that stops reading is dropped once its unsent bytes pass
MAX_SEND_BUFFER_BYTES, and resumes from its cursor (issue 5: bounded send buffers)."""

import asyncio
import json
import socket

import pytest
import requests
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .test_operations import json_lines, scrape

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

FRAMES = 400  # ~17 KB each: ~7 MB, more than the kernel's socket buffers hold


async def test_a_client_that_does_not_read_is_dropped_and_resumes(daphne_factory, user, token, service_key):
    server = daphne_factory(DJANGO_SETTINGS_MODULE="tests.slow_client_settings", NOTIFY_METRICS_TOKEN="m",
                            NOTIFY_LOG_FORMAT="json")
    headers = {"Authorization": f"Bearer {token}"}
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    # max_queue=1: the client library stops reading the socket once one frame waits.
    ws = await connect(f"{server.ws_url}/ws/notify/", sock=sock, additional_headers=headers, max_queue=1,
                       max_size=None)
    hello = json.loads(await ws.recv())
    body = "x" * 9000
    with requests.Session() as http:
        for n in range(FRAMES):
            answer = http.post(f"{server.url}/notify/api/send/", timeout=10,
                               headers={"Authorization": f"Bearer {service_key}"},
                               json={"recipients": [user.pk], "title": f"n{n}", "body": body,
                                     "data": {"pad": "x" * 8000}})
            assert answer.status_code == 201, answer.text
    # Now read: what was sent before the drop arrives, then the connection ends.
    received = []
    with pytest.raises(ConnectionClosed):
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame["type"] == "notification":
                received.append(frame["notification"]["id"])
    # Dropped (an abort may also discard what the client's kernel still held).
    assert len(received) < FRAMES
    assert "closing slow WebSocket" in server.logs()
    # The operator sees it: a metric and a structured log line.
    assert scrape(server, "m")["notify_slow_clients_dropped_total"] == 1
    dropped = [line for line in json_lines(server.logs()) if line.get("event") == "websocket.slow_client_dropped"]
    assert dropped and dropped[0]["user_id"] == user.pk and dropped[0]["unsent_bytes"] > 64 * 1024
    # Resuming from the last id it saw brings exactly the rest, in order.
    cursor = received[-1] if received else hello["cursor"]
    async with connect(f"{server.ws_url}/ws/notify/?since={cursor}", additional_headers=headers,
                       max_size=None) as again:
        assert json.loads(await again.recv())["type"] == "hello"
        rest = [json.loads(await asyncio.wait_for(again.recv(), 10))["notification"]["id"]
                for _ in range(FRAMES - len(received))]
    assert received + rest == sorted(set(received + rest))
    assert len(received + rest) == FRAMES
