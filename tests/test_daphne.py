"""What notify/daphne.py makes daphne refuse before the application runs (issue 10), on a
real daphne process: oversize WebSocket messages (4009, no reassembly), oversize request
bodies (413 before reading), a non-ASCII Sec-WebSocket-Protocol (400), slow headers."""

import asyncio
import json
import socket
import time

import daphne
import pytest

from bench.hostile_memory import memory, reset_peak, text_frame_header, ws_oversize
from notify.realtime.daphne import check_internals

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

MiB = 1024 * 1024


def test_the_daphne_internals_we_rely_on_are_unchanged():
    # A new daphne, Twisted or autobahn must be checked against notify/daphne.py first.
    assert daphne.__version__ == "4.2.3"
    check_internals()


def raw_request(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send ``data`` and return what the server answers until it closes (or ``timeout``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        return answer


def upgrade(path: str = "/ws/notify/", extra: bytes = b"") -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n").encode() + extra + b"\r\n"


async def test_oversize_messages_close_4009_without_reassembly(daphne_factory, token):
    server = daphne_factory()
    pid = server.proc.pid
    # Warm up the code paths (a refusal, an accepted connection) before measuring.
    assert await ws_oversize(server.port, token, memoryview(b"x" * 70_000)) == "close 4009"
    await asyncio.sleep(0.5)
    before = memory(pid)["rss_mib"]
    reset_peak(pid)
    for size in (MiB + 1, 16 * MiB):
        assert await ws_oversize(server.port, token, memoryview(b"x" * size)) == "close 4009"
    growth = memory(pid)["peak_mib"] - before
    assert growth < 1.0, f"peak RSS grew by {growth:.2f} MiB"
    # The server is alive and serves the next client.
    assert await ws_oversize(server.port, token, memoryview(b'{"type": "ping"}')) != "eof"


async def test_a_message_over_the_limit_in_small_fragments_closes_4009(daphne_factory, token):
    server = daphne_factory()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(upgrade(extra=f"Authorization: Bearer {token}\r\n".encode()))
    await reader.readuntil(b"\r\n\r\n")
    piece = b"x" * 4096
    # 17 fragments of 4 KiB: each frame is small, the message is over 64 KiB.
    for n in range(17):
        opcode = 0x1 if n == 0 else 0x0
        writer.write(bytes([opcode, 0x80 | 126]) + len(piece).to_bytes(2, "big") + b"\0\0\0\0" + piece)
    await writer.drain()
    frames = []
    while True:
        head = await asyncio.wait_for(reader.readexactly(2), 10)
        size = head[1] & 0x7F
        if size == 126:
            size = int.from_bytes(await reader.readexactly(2), "big")
        payload = await reader.readexactly(size)
        frames.append((head[0] & 0x0F, payload))
        if head[0] & 0x0F == 8:
            break
    assert int.from_bytes(frames[-1][1][:2], "big") == 4009
    writer.close()


def test_body_over_the_limit_is_413_before_it_is_read(daphne_factory, token):
    server = daphne_factory()
    # Only the headers: the answer must not wait for the 16 MiB announced.
    answer = raw_request(server.port, (
        "POST /notify/api/notifications/read/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {16 * MiB}\r\n\r\n").encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert b"x-content-type-options: nosniff" in head.lower()
    assert json.loads(body)["error"]["code"] == "payload_too_large"


def test_chunked_body_over_the_limit_is_413(daphne_factory, token):
    server = daphne_factory()
    chunk = b"x" * 8192
    body = (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 9  # 72 KiB, no terminating chunk
    answer = raw_request(server.port, (
        "POST /notify/api/send/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\n\r\n").encode() + body)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "payload_too_large"


def test_non_ascii_subprotocol_is_400_not_500(daphne_factory, token):
    server = daphne_factory()
    for value in ("\u00e9".encode(), b"notify.v1, \xff\xfe", "\u00e9".encode("latin1")):
        answer = raw_request(server.port, upgrade(extra=b"Sec-WebSocket-Protocol: " + value + b"\r\n"))
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:100]
    assert "Traceback" not in server.logs()


def test_unrouted_websocket_paths_are_refused_not_500(daphne_factory):
    server = daphne_factory()
    for path in ("/ws/notify", "/ws/notify//", "/ws/notify/x", "/WS/NOTIFY/", "/notify/poll/"):
        answer = raw_request(server.port, upgrade(path))
        assert answer.startswith(b"HTTP/1.1 403 "), (path, answer[:100])
    assert "Exception inside application" not in server.logs()
    assert "No route found" not in server.logs()


def trickle(port: int, first: bytes, drip: bytes, limit: float = 30) -> bool:
    """Send ``first``, then one byte of ``drip`` a second; return whether the server
    closed the connection before ``limit`` seconds (it never gets complete headers)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(first)
        sock.settimeout(1)
        deadline = time.monotonic() + limit
        for byte in drip:
            if time.monotonic() > deadline:
                return False
            try:
                if sock.recv(4096) == b"":
                    return True
            except TimeoutError:
                pass
            except ConnectionResetError:
                return True
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                return True
    return False


DRIP = b"X-Slow: " + b"a" * 100


def test_slow_request_headers_are_cut_off(daphne_factory):
    server = daphne_factory(DJANGO_SETTINGS_MODULE="tests.hostile_settings")
    assert trickle(server.port, b"G", b"ET /notify/poll/ HTTP/1.1\r\n" + DRIP)
    assert trickle(server.port, b"GET /notify/poll/ HTTP/1.1\r\n", DRIP)


def test_slow_headers_of_a_kept_alive_request_are_cut_off(daphne_factory):
    server = daphne_factory(DJANGO_SETTINGS_MODULE="tests.hostile_settings")
    first = b"GET /notify/poll/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"  # a complete request: 401
    assert trickle(server.port, first + b"GET /notify/poll/ HTTP/1.1\r\n", DRIP)


def test_daphne_own_errors_under_notify_are_json(daphne_factory):
    # A header value with a byte RFC 9110 forbids: daphne's own 400 page. (A non-ASCII
    # request line gets Twisted's bare "400 Bad Request" before daphne sees it.)
    server = daphne_factory()
    request_head = b"GET /notify/poll/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Odd: a\x85b\r\n\r\n"
    head, _, body = raw_request(server.port, request_head).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"content-type: application/json" in head.lower()
    if b"transfer-encoding: chunked" in head.lower():
        body = body.split(b"\r\n")[1]
    assert json.loads(body)["error"]["code"] == "bad_request"


async def test_wrapped_send_keeps_daphnes_shape_for_the_hub():
    # notify.realtime.daphne.SocketWriter reaches the connection through send.args[0]; NotifyGuard's wrapper must
    # not hide it (or the send-buffer bound and the direct socket writes stop working).
    import functools

    from notify.realtime.daphne import wrap_send

    sent = []

    async def handle_reply(protocol, message):
        sent.append((protocol, message))

    protocol = object()
    wrapped = wrap_send(functools.partial(handle_reply, protocol), lambda m: {**m, "seen": True})
    assert isinstance(wrapped, functools.partial) and wrapped.args[0] is protocol
    await wrapped({"type": "x"})
    assert sent == [(protocol, {"type": "x", "seen": True})]
