"""Fuzzing one real daphne process through the public interface (issue 10).

- HTTP: hypothesis draws a method, an endpoint (every one under ``/notify/``, and a few
  pages), query parameters, headers (credentials good and bad, ``Host``, ``Origin``,
  ``Last-Event-ID``, cookies, ...) and a body (JSON with NUL, lone surrogates, deep
  nesting, odd types; raw bytes; other encodings). No answer may be a 5xx, and every
  error under ``/notify/`` must be docs/protocol.md §2's JSON error body.
- WebSocket: odd handshakes (paths, subprotocols, versions, keys, ``since``), then raw
  RFC 6455 frames on an authenticated connection (every opcode, RSV bits, unmasked,
  fragments, control frames too long, invalid UTF-8, lying lengths, close codes, JSON
  frames of every shape). No handshake may answer 5xx, no close may carry 1011 (an
  error inside the server), and each connection that is still open answers a ``ping``.
- Afterwards the server is alive and its log has no "Exception inside application".

``NOTIFY_FUZZ_EXAMPLES`` (default 300) sets the examples per fuzzer; the three together
take about a minute on a 2-core machine. The figures are printed (``pytest -s``).
"""

import base64
import http.client
import json
import os
import socket
import struct
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

EXAMPLES = int(os.environ.get("NOTIFY_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.large_base_example])

ENDPOINTS = [
    "/notify/poll/", "/notify/stream/", "/notify/api/notifications/", "/notify/api/notifications/unread-count/",
    "/notify/api/notifications/read/", "/notify/api/send/", "/notify/api/announce/", "/notify/", "/notify",
    "/notify/api/", "/notify/x/%00", "/notify/api/send", "/notify/poll/x", "/ws/notify/", "/", "/accounts/login/",
    "/admin/login/", "/static/notify/client.js",
]
PARAMS = ["since", "timeout", "limit", "before", "unread", "x", "since[]", ""]
TRICKY = ["", "0", "1", "-1", "55", "56", "500", "501", "1e3", "0x10", "\u0663", "99999999999999999999",
          "9223372036854775808", " 1", "1 ", "\x00", "\ud800", "true", "null", "[]", "%", "a" * 300]
SEND_FIELDS = ["recipients", "title", "body", "kind", "level", "url", "data", "dedupe_key", "group", "expires_at",
               "ids", "all", "extra"]

text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
tricky_text = st.one_of(st.sampled_from(TRICKY), text, st.integers(-(2**70), 2**70).map(str))
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                      st.floats(allow_nan=False, allow_infinity=False), tricky_text)
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.sampled_from(SEND_FIELDS), text), inner, max_size=4)),
    max_leaves=12)
latin1 = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=60)


def nested(depth: int) -> bytes:
    return b'{"title": "t", "data": ' + b"[" * depth + b"]" * depth + b"}"


@st.composite
def bodies(draw):
    kind = draw(st.sampled_from(["none", "json", "fields", "raw", "nested", "encoded", "expires"]))
    if kind == "none":
        return None
    if kind == "json":
        return json.dumps(draw(json_value)).encode()
    if kind == "fields":
        fields = draw(st.dictionaries(st.sampled_from(SEND_FIELDS), json_value, max_size=6))
        if draw(st.booleans()):
            fields.setdefault("title", draw(tricky_text))
            fields.setdefault("recipients", draw(st.lists(st.one_of(st.integers(-5, 5), tricky_text,
                                                                    st.just("alice")), max_size=3)))
        return json.dumps(fields).encode()
    if kind == "raw":
        return draw(st.binary(max_size=200))
    if kind == "nested":
        return nested(draw(st.sampled_from([10, 900, 1100, 30_000])))
    if kind == "encoded":
        value = json.dumps({"recipients": ["alice"], "title": draw(text)}, ensure_ascii=False)
        return value.encode(draw(st.sampled_from(["utf-16", "utf-16-be", "utf-32", "utf-8-sig", "latin1"])),
                            errors="replace")
    offset = draw(st.sampled_from(["-23:59", "+23:59", "Z", "", "+99:00"]))
    year = draw(st.sampled_from(["9999", "0001", "2999", "10000", "0000"]))
    return json.dumps({"title": "t", "expires_at": f"{year}-12-31T23:59:59{offset}"}).encode()


@st.composite
def http_requests(draw):
    path = draw(st.sampled_from(ENDPOINTS))
    query = draw(st.dictionaries(st.sampled_from(PARAMS), tricky_text, max_size=3))
    if path.startswith("/notify/poll"):
        # A valid since and timeout would hold the request for up to 55 s.
        query["timeout"] = draw(st.sampled_from(["0", "-1", "56", "x", ""]))
    headers = {}
    auth = draw(st.sampled_from(["token", "service", "garbage", "none", "basic", "empty"]))
    headers["Authorization"] = {"token": "Bearer {token}", "service": "Bearer {service}", "basic": "Basic eDp5",
                                "empty": "Bearer ", "none": None}.get(auth, None)
    if auth == "garbage":
        headers["Authorization"] = "Bearer " + draw(latin1)
    headers["Host"] = draw(st.sampled_from(["127.0.0.1", "localhost", "evil.example", "127.0.0.1:1", "[::1",
                                            "a b", None])) or draw(latin1)
    for name in ("Content-Type", "Last-Event-ID", "Origin", "Cookie", "X-Forwarded-Proto", "Accept"):
        if draw(st.integers(0, 3)) == 0:
            headers[name] = draw(st.one_of(latin1, st.sampled_from(
                ["application/json", "text/plain", "sessionid=x; csrftoken=y", "https", "1", "-1"])))
    method = draw(st.sampled_from(["GET", "POST", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "BREW"]))
    return method, path, query, headers, draw(bodies())


def is_contract_error(raw: bytes) -> bool:
    try:
        error = json.loads(raw)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(error, dict) and isinstance(error.get("code"), str) and isinstance(error.get("message"), str)


@pytest.fixture
def target(daphne_factory, make_user, token, service_key):
    from django.contrib.auth.models import Group

    alice = make_user("alice2")
    Group.objects.create(name="staff").user_set.add(alice)
    server = daphne_factory()
    yield server, token, service_key
    assert "Exception inside application" not in server.logs()


def test_http_fuzz_no_5xx_and_contract_errors(target):
    server, token, service = target
    figures = {"inputs": 0, "5xx": 0, "non_contract": 0}
    failures = []

    @FUZZ
    @given(http_requests())
    def one(request):
        method, path, query, headers, body = request
        figures["inputs"] += 1
        query_string = "&".join(f"{quote(k, safe='')}={quote(v, safe='', errors='surrogatepass')}"
                                for k, v in query.items())
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=15)
        try:
            conn.putrequest(method, path + ("?" + query_string if query_string else ""), skip_host=True,
                            skip_accept_encoding=True)
            for name, value in headers.items():
                if value is not None:
                    conn.putheader(name, value.replace("{token}", token).replace("{service}", service).encode("latin1"))
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            streaming = response.status == 200 and response.getheader("Content-Type", "").startswith("text/event")
            raw = b"" if streaming or method == "HEAD" else response.read()
        finally:
            conn.close()
        if response.status >= 500:
            figures["5xx"] += 1
            failures.append((request, response.status, raw[:200]))
        elif path.startswith("/notify/") and response.status >= 400 and method != "HEAD":
            if response.getheader("Content-Type") != "application/json" or not is_contract_error(raw):
                figures["non_contract"] += 1
                failures.append((request, response.status, raw[:200]))

    one()
    print(f"\nHTTP fuzz: {figures}")
    assert not failures, failures[:5]
    alive = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    alive.request("GET", "/notify/poll/?timeout=0", headers={"Authorization": f"Bearer {token}"})
    assert alive.getresponse().status == 200


# WebSocket


def handshake_bytes(path: str, headers: dict) -> bytes:
    lines = [f"GET {path} HTTP/1.1".encode()]
    lines += [name.encode() + b": " + value for name, value in headers.items() if value is not None]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def base_headers(token: str) -> dict:
    return {"Host": b"127.0.0.1", "Upgrade": b"websocket", "Connection": b"Upgrade",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)), "Sec-WebSocket-Version": b"13",
            "Authorization": f"Bearer {token}".encode()}


def read_head(sock) -> tuple[bytes, bytes]:
    """Read an HTTP response head; return it and the bytes received after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def frame(opcode: int, payload: bytes, *, fin=True, rsv=0, mask=True, declared: int | None = None) -> bytes:
    size = len(payload) if declared is None else declared
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    flag = 0x80 if mask else 0
    if size < 126:
        head += bytes([flag | size])
    elif size < 65536:
        head += bytes([flag | 126]) + struct.pack("!H", size)
    else:
        head += bytes([flag | 127]) + struct.pack("!Q", size)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_frames(sock, buffer: bytes = b""):
    """Yield ``(opcode, payload)`` of server frames until the connection ends."""
    while True:
        while len(buffer) < 2 or len(buffer) < _frame_size(buffer):
            chunk = sock.recv(65536)
            if not chunk:
                return
            buffer += chunk
        size = _frame_size(buffer)
        head_len = size - _payload_len(buffer)
        yield buffer[0] & 0x0F, buffer[head_len:size]
        buffer = buffer[size:]


def _payload_len(buffer: bytes) -> int:
    size = buffer[1] & 0x7F
    if size == 126:
        return struct.unpack("!H", buffer[2:4])[0] if len(buffer) >= 4 else 1 << 62
    if size == 127:
        return struct.unpack("!Q", buffer[2:10])[0] if len(buffer) >= 10 else 1 << 62
    return size


def _frame_size(buffer: bytes) -> int:
    size = _payload_len(buffer)
    extra = {126: 2, 127: 8}.get(buffer[1] & 0x7F, 0)
    return 2 + extra + size


frame_json = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["read", "read_all", "ping", "pong", "x", "READ"])},
                          optional={"ids": json_value, "all": json_value}),
    json_value,
)


@st.composite
def ws_frames(draw):
    frames = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["json", "json", "text", "bytes", "control", "close", "odd", "lie", "fragments"]))
        if kind == "json":
            frames.append(frame(1, json.dumps(draw(frame_json)).encode()))
        elif kind == "text":
            frames.append(frame(1, draw(text).encode("utf-8", errors="surrogatepass")))
        elif kind == "bytes":
            frames.append(frame(draw(st.sampled_from([1, 2])), draw(st.binary(max_size=300))))
        elif kind == "control":
            frames.append(frame(draw(st.sampled_from([9, 10])), draw(st.binary(max_size=200))))
        elif kind == "close":
            code = draw(st.sampled_from([0, 999, 1000, 1004, 1005, 1006, 1011, 1015, 2999, 3000, 4009, 5000, 65535]))
            frames.append(frame(8, struct.pack("!H", code) + draw(st.binary(max_size=20))))
        elif kind == "odd":
            frames.append(frame(draw(st.integers(0, 15)), draw(st.binary(max_size=50)), fin=draw(st.booleans()),
                                rsv=draw(st.integers(0, 7)), mask=draw(st.booleans())))
        elif kind == "lie":
            frames.append(frame(1, b"x" * 10, declared=draw(st.sampled_from([65537, 2**31, 2**63 - 1]))))
        else:
            parts = draw(st.lists(st.binary(min_size=1, max_size=40), min_size=2, max_size=4))
            frames += [frame(1 if i == 0 else 0, part, fin=i == len(parts) - 1) for i, part in enumerate(parts)]
    return frames


def test_websocket_frame_fuzz_no_internal_errors(target):
    server, token, _ = target
    figures = {"inputs": 0, "1011": 0, "still_open_no_pong": 0}
    failures = []

    @FUZZ
    @given(ws_frames())
    def one(frames):
        figures["inputs"] += 1
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(handshake_bytes("/ws/notify/", base_headers(token)))
            head, rest = read_head(sock)
            assert head.startswith(b"HTTP/1.1 101"), head[:200]
            frames_in = read_frames(sock, rest)
            assert json.loads(next(frames_in)[1])["type"] == "hello"
            try:
                sock.sendall(b"".join(frames) + frame(1, b'{"type": "ping"}'))
            except (BrokenPipeError, ConnectionResetError):
                return
            try:
                for opcode, payload in frames_in:
                    if opcode == 8:
                        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                        if code == 1011:
                            figures["1011"] += 1
                            failures.append((frames, code))
                        return
                    if opcode == 1 and json.loads(payload).get("type") == "pong":
                        return
            except ConnectionResetError:
                return
            except TimeoutError:
                figures["still_open_no_pong"] += 1
                failures.append((frames, "no pong and no close"))

    one()
    print(f"\nWebSocket frame fuzz: {figures}")
    assert not failures, failures[:5]


@st.composite
def ws_handshakes(draw):
    headers = base_headers("{token}")
    path = draw(st.sampled_from(["/ws/notify/", "/ws/notify", "/ws/notify//", "/ws/notify/x", "/WS/NOTIFY/",
                                 "/notify/poll/", "/", "/ws/notify/?since=", "/ws/notify/?since=-1",
                                 "/ws/notify/?since=%ff", "/ws/notify/?since=99999999999999999999999"]))
    if draw(st.booleans()):
        headers["Sec-WebSocket-Protocol"] = draw(st.one_of(
            st.sampled_from([b"notify.v1", b"notify.v2", b"notify.v1, x", b"", b",,", "\u00e9".encode(),
                             b"\xff\xfe", b"%ff", b"%C3%A9"]), st.binary(max_size=30).filter(
                lambda b: not set(b) & set(b"\r\n\x00"))))
    if draw(st.integers(0, 3)) == 0:
        headers["Sec-WebSocket-Version"] = draw(st.sampled_from([b"8", b"14", b"", b"13, 8", b"x"]))
    if draw(st.integers(0, 3)) == 0:
        headers["Sec-WebSocket-Key"] = draw(st.sampled_from([None, b"", b"short", b"!" * 24]))
    if draw(st.integers(0, 2)) == 0:
        headers["Authorization"] = draw(st.sampled_from([None, b"Bearer x", b"Bearer \x80\x81\xff", b"Basic x"]))
    if draw(st.integers(0, 2)) == 0:
        headers["Origin"] = draw(st.sampled_from([b"http://evil.example", b"null", b"", b"http://127.0.0.1",
                                                  "http://\u00e9.example".encode()]))
    if draw(st.integers(0, 3)) == 0:
        headers["Host"] = draw(st.sampled_from([None, b"evil.example", b""]))
    return path, headers


def test_websocket_handshake_fuzz_no_5xx(target):
    server, token, _ = target
    figures = {"inputs": 0, "5xx": 0}
    failures = []

    @FUZZ
    @given(ws_handshakes())
    def one(request):
        path, headers = request
        figures["inputs"] += 1
        headers = {name: (value.replace(b"{token}", token.encode()) if value else value)
                   for name, value in headers.items()}
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(handshake_bytes(path, headers))
            try:
                status_line = read_head(sock)[0].split(b"\r\n", 1)[0]
            except ConnectionResetError:
                return
        parts = status_line.split()
        if len(parts) >= 2 and parts[1].startswith(b"5"):
            figures["5xx"] += 1
            failures.append((request, status_line))

    one()
    print(f"\nWebSocket handshake fuzz: {figures}")
    assert not failures, failures[:5]
