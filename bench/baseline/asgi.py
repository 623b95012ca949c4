"""ASGI application of the baseline (bench only).

    DJANGO_SETTINGS_MODULE=bench.baseline.settings \
        daphne -e tcp:port=8100:backlog=4096:interface=127.0.0.1 bench.baseline.asgi:application

WebSocket on any path: the plain ``group_send`` consumer. HTTP ``POST /announce/`` with
a JSON body ``{"seq": S, "count": C, "t": <ms since epoch, optional>}`` is the trigger:
it runs in the server process, so it works with the in-memory layer too.
"""

import json
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.baseline.settings")

import django  # noqa: E402

django.setup()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from .consumers import BroadcastConsumer, announce  # noqa: E402


async def _respond(send, status, payload):
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def http_app(scope, receive, send):
    body = b""
    for _ in range(1000):  # bounded: at most 1000 body chunks
        message = await receive()
        if message["type"] != "http.request":
            return
        body += message.get("body", b"")
        if not message.get("more_body") or len(body) > 65536:
            break
    if scope["method"] == "POST" and scope["path"].rstrip("/") == "/announce":
        try:
            params = json.loads(body or b"{}")
            seq = int(params.get("seq", 0))
            count = max(1, min(10000, int(params.get("count", 1))))
            t = params.get("t")
            t = float(t) if t is not None else None
        except (ValueError, TypeError, AttributeError):
            await _respond(send, 400, {"error": {"code": "invalid_parameter", "message": "bad body"}})
            return
        sent = await announce(seq, count, t)
        await _respond(send, 200, {"sent": sent})
        return
    await _respond(send, 404, {"error": {"code": "not_found", "message": "not found"}})


application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": BroadcastConsumer.as_asgi(),
    }
)
