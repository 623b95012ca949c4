"""ASGI guards of notify/middleware.py (issue 10): unrouted WebSocket paths, allowed
hosts, body size, security headers and the SSL redirect for the consumers, and the
per-user and per-client connection caps."""

import asyncio
import json
import logging

import pytest
from channels.testing import ApplicationCommunicator, WebsocketCommunicator

from notify.middleware import NotifyGuard

from .streamhelpers import HttpClient, application, auth, wait_held

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def layer(channel_layer):
    return channel_layer


def websocket(path="/ws/notify/", token=None, headers=()):
    headers = list(headers)
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return WebsocketCommunicator(application(), path, headers=headers)


async def connects(communicator) -> bool:
    connected, _ = await communicator.connect(timeout=3)
    return connected


def assert_json_error(client: HttpClient, body: dict, status: int, code: str):
    assert client.status == status, body
    assert client.headers["content-type"] == "application/json"
    assert body["error"]["code"] == code and body["error"]["message"]


# WebSocket paths no route matches


@pytest.mark.parametrize("path", ["/ws/notify", "/ws/notify//", "/ws/notify/x", "/WS/NOTIFY/", "/notify/poll/", "/"])
async def test_unrouted_websocket_path_is_refused_and_logged_at_info(transactional_db, caplog, path):
    caplog.set_level(logging.INFO, logger="notify")
    assert not await connects(websocket(path))
    records = [r for r in caplog.records if "no route" in r.getMessage()]
    assert records and records[0].levelno == logging.INFO and path in records[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# Hosts, body size, nosniff


@pytest.mark.parametrize("path", ["/notify/poll/", "/notify/stream/", "/notify/api/notifications/", "/notify/x"])
async def test_disallowed_host_under_notify_is_json_bad_request(transactional_db, caplog, path):
    client = HttpClient(path, headers=[(b"host", b"evil.example")])
    body = await client.json()
    assert_json_error(client, body, 400, "bad_request")
    assert client.headers["x-content-type-options"] == "nosniff"
    assert any(r.name == "django.security.DisallowedHost" for r in caplog.records)


async def test_content_length_over_the_limit_is_413_before_the_body_is_read(transactional_db, token):
    client = HttpClient("/notify/api/send/", method="POST",
                        headers=[*auth(token), (b"content-length", str(16 * 1024 * 1024).encode())])
    # Only the headers were sent: the answer comes without waiting for the body.
    await client.comm.send_input({"type": "http.request", "body": b"{", "more_body": True})
    await client.start()
    assert_json_error(client, json.loads(await client.read_all()), 413, "payload_too_large")


def _poll_cases():
    return [
        ("/notify/poll/?since=0&timeout=0", True, 200),
        ("/notify/poll/?since=x", True, 400),
        ("/notify/poll/", False, 401),
        ("/notify/stream/?since=x", True, 400),
        ("/notify/stream/", False, 401),
        ("/notify/nowhere/", True, 404),
    ]


@pytest.mark.parametrize("path,authed,status", _poll_cases())
async def test_every_consumer_answer_has_nosniff(token, path, authed, status):
    client = HttpClient(path, headers=auth(token) if authed else [])
    await client.start()
    assert client.status == status
    assert client.headers["x-content-type-options"] == "nosniff"
    assert list(client.headers).count("x-content-type-options") == 1


async def test_sse_stream_has_nosniff(token):
    client = HttpClient("/notify/stream/", headers=auth(token))
    await client.start()
    assert client.status == 200 and client.headers["x-content-type-options"] == "nosniff"
    await client.disconnect()


# DJANGO_SECURE: SECURE_SSL_REDIRECT behind SECURE_PROXY_SSL_HEADER


@pytest.fixture
def secure(settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600


@pytest.mark.parametrize("path", ["/notify/poll/?since=0&timeout=0", "/notify/stream/"])
async def test_secure_redirects_plain_http_consumer_requests(secure, token, path):
    client = HttpClient(path, headers=[*auth(token), (b"host", b"localhost")])
    await client.start()
    assert client.status == 301
    assert client.headers["location"] == f"https://localhost{path}"


async def test_secure_serves_consumers_behind_a_tls_proxy_with_hsts(secure, token):
    client = HttpClient("/notify/poll/?since=0&timeout=0",
                        headers=[*auth(token), (b"host", b"localhost"), (b"x-forwarded-proto", b"https")])
    await client.read_all()
    assert client.status == 200
    assert client.headers["strict-transport-security"].startswith("max-age=3600")
    assert client.headers["x-content-type-options"] == "nosniff"


async def test_secure_refuses_plain_websocket_and_accepts_behind_a_tls_proxy(secure, token, caplog):
    assert not await connects(websocket(token=token))
    assert any("plain HTTP" in r.getMessage() for r in caplog.records)
    communicator = websocket(token=token, headers=[(b"x-forwarded-proto", b"https")])
    assert await connects(communicator)
    await communicator.disconnect()


# Per-user connection cap


async def test_connections_past_the_per_user_cap_are_refused(user, token, settings, caplog):
    settings.NOTIFY = {"MAX_CONNECTIONS_PER_USER": 2}
    sockets = [websocket(token=token) for _ in range(2)]
    for communicator in sockets:
        assert await connects(communicator)
        await communicator.receive_json_from(timeout=3)
    await wait_held(user, 2)
    assert not await connects(websocket(token=token))
    assert any("2 connections open" in r.getMessage() for r in caplog.records)
    stream = HttpClient("/notify/stream/", headers=auth(token))
    body = await stream.json()
    assert_json_error(stream, body, 429, "rate_limited")
    assert int(stream.headers["retry-after"]) >= 1
    await sockets[0].disconnect()
    third = websocket(token=token)
    assert await connects(third)
    for communicator in (sockets[1], third):
        await communicator.disconnect()


# Handshakes in progress per client address


async def test_handshakes_in_progress_per_client_are_capped(settings, caplog):
    settings.NOTIFY = {"MAX_HANDSHAKES_PER_CLIENT": 2}
    release = asyncio.Event()

    async def slow_app(scope, receive, send):
        assert (await receive())["type"] == "websocket.connect"
        await release.wait()
        await send({"type": "websocket.accept"})
        await receive()

    guard = NotifyGuard(slow_app)

    def handshake(client):
        scope = {"type": "websocket", "path": "/ws/notify/", "query_string": b"", "headers": [],
                 "client": (client, 4000), "subprotocols": []}
        communicator = ApplicationCommunicator(guard, scope)
        return communicator

    pending = [handshake("10.0.0.1") for _ in range(2)]
    for communicator in pending:
        await communicator.send_input({"type": "websocket.connect"})
    assert await pending[0].receive_nothing(0.05)
    third = handshake("10.0.0.1")
    await third.send_input({"type": "websocket.connect"})
    assert (await third.receive_output(1))["type"] == "websocket.close"
    assert any("handshakes in progress" in r.getMessage() for r in caplog.records)
    other = handshake("10.0.0.2")  # another address is not affected
    await other.send_input({"type": "websocket.connect"})
    release.set()
    for communicator in (*pending, other):
        assert (await communicator.receive_output(1))["type"] == "websocket.accept"
    fourth = handshake("10.0.0.1")  # accepted handshakes no longer count
    await fourth.send_input({"type": "websocket.connect"})
    assert (await fourth.receive_output(1))["type"] == "websocket.accept"
    assert guard.handshakes["10.0.0.1"] == 0
    for communicator in (*pending, other, fourth):
        await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
        await communicator.wait(1)
