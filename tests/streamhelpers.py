"""Helpers shared by the long-poll and SSE tests."""

import asyncio
import json
import time

from channels.db import database_sync_to_async
from channels.testing import ApplicationCommunicator
from django.test import Client

from notify import services
from notify.realtime.hub import get_hub


def auth(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {token}".encode())]


def http_scope(path: str, *, method: str = "GET", headers=None) -> dict:
    path, _, query = path.partition("?")
    return {
        "type": "http", "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": query.encode(),
        "headers": list(headers or []), "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
    }


def application():
    from config.asgi import application

    return application


class HttpClient:
    """An ``ApplicationCommunicator`` for one HTTP request to the ASGI application,
    reading a response body chunk by chunk (long-poll and SSE)."""

    def __init__(self, path: str, *, method: str = "GET", headers=None, body: bytes = b""):
        self.comm = ApplicationCommunicator(application(), http_scope(path, method=method, headers=headers))
        self.body = body
        self.status = None
        self.headers = {}
        self.buffer = b""
        self.complete = False

    async def start(self, timeout: float = 3) -> None:
        """Send the request and read the response start (status and headers)."""
        await self.comm.send_input({"type": "http.request", "body": self.body})
        start = await self.comm.receive_output(timeout)
        assert start["type"] == "http.response.start", start
        self.status = start["status"]
        self.headers = {name.decode().lower(): value.decode() for name, value in start["headers"]}

    async def chunk(self, timeout: float = 3) -> bytes:
        message = await self.comm.receive_output(timeout)
        assert message["type"] == "http.response.body", message
        if not message.get("more_body"):
            self.complete = True
        self.buffer += message["body"]
        return message["body"]

    async def read_all(self, timeout: float = 3) -> bytes:
        if self.status is None:
            await self.start(timeout)
        while not self.complete:
            await self.chunk(timeout)
        return self.buffer

    async def json(self, timeout: float = 3):
        return json.loads(await self.read_all(timeout))

    async def nothing(self, timeout: float = 0.2) -> bool:
        return await self.comm.receive_nothing(timeout)

    async def disconnect(self) -> None:
        await self.comm.send_input({"type": "http.disconnect"})
        await self.comm.wait(2)


async def get(path: str, headers=None, timeout: float = 3) -> tuple[int, dict, dict]:
    """Make one complete request; return ``(status, headers, JSON body)``."""
    client = HttpClient(path, headers=headers)
    body = await client.json(timeout)
    return client.status, client.headers, body


async def wait_until(predicate, timeout: float = 3.0) -> None:
    """Wait (checking every few ms) until ``predicate()`` is true; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


async def wait_held(user, count: int = 1) -> None:
    """Wait until ``count`` connections of ``user`` are registered and have their backlog read."""
    hub = get_hub()
    await wait_until(
        lambda: sum(1 for s in hub.by_user.get(user.pk, ()) if s.pending is None) >= count
    )


async def asend(recipients, **fields):
    notifications, _ = await database_sync_to_async(services.send)(recipients, **fields)
    return notifications


@database_sync_to_async
def session_cookie(user) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    return [(b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]
