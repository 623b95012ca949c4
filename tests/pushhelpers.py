"""A local fake push service and browser-side push keys for the Web Push tests."""

import base64
import json
import os
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import http_ece
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class BrowserKeys:
    """What a browser generates for a push subscription: a P-256 key pair and a 16-byte
    auth secret; ``decrypt`` opens an ``aes128gcm`` push body (RFC 8291) with http_ece."""

    private: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    auth_secret: bytes = field(default_factory=lambda: os.urandom(16))

    @property
    def p256dh(self) -> str:
        return b64url(self.private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))

    @property
    def auth(self) -> str:
        return b64url(self.auth_secret)

    def subscription(self, endpoint: str) -> dict:
        return {"endpoint": endpoint, "expirationTime": None, "keys": {"p256dh": self.p256dh, "auth": self.auth}}

    def decrypt(self, body: bytes) -> dict:
        return json.loads(http_ece.decrypt(body, private_key=self.private, auth_secret=self.auth_secret,
                                           version="aes128gcm"))


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes
    at: float


class FakePushService:
    """An HTTP push service on 127.0.0.1 that records every POST.

    ``status[path]`` sets the answer for a path (default 201); ``hold`` (an Event): while
    set, requests after the first ``answer_first`` wait (a hung push service).
    """

    def __init__(self):
        self.received: list[Received] = []
        self.status: dict[str, int] = {}
        self.lock = threading.Lock()
        self.hold = threading.Event()
        self.answer_first = 0
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with service.lock:
                    count = len(service.received)
                if service.hold.is_set() and count >= service.answer_first:
                    deadline = time.monotonic() + 30
                    while service.hold.is_set() and time.monotonic() < deadline:
                        time.sleep(0.05)
                    if service.hold.is_set():
                        return
                with service.lock:
                    service.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.time()))
                self.send_response(service.status.get(self.path, 201))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def endpoint(self, name: str) -> str:
        return f"{self.url}/push/{name}"

    def to(self, name: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == f"/push/{name}"]

    def close(self):
        self.hold.clear()
        self.server.shutdown()
        self.server.server_close()
