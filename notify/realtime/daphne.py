"""The only module that knows daphne's and Twisted's internals.

Everything here has a plain fallback for any other ASGI server (``None``, ``False``,
or the ASGI path), and ``tests/test_daphne_internals.py`` fails loudly when the daphne,
autobahn or Twisted attributes it relies on change.

Under daphne, a connection's ASGI ``send`` is ``functools.partial(server.handle_reply,
protocol)`` and its ``receive`` is the bound ``get`` of an ``asyncio.Queue``.

Limits that must hold before the application runs (issue 10):

Some limits must hold before the application runs, where no ASGI middleware reaches:
daphne reads a whole request body before it calls the application, reassembles a whole
WebSocket message before it hands it over, and lets a client take forever to send its
headers. ``install()`` (called from ``NotifyConfig.ready``, so it also works for the plain
``daphne config.asgi:application`` command) adjusts daphne's classes:

- WebSocket messages and frames over ``MAX_FRAME_BYTES`` are refused by autobahn as
  their header arrives (``maxMessagePayloadSize`` / ``maxFramePayloadSize``, set in
  ``Server.run``), with close code 4009 (autobahn's own choice, 1009, is out of the
  contract's range) instead of a silent drop: nothing over the limit is reassembled.
- A request under ``/notify/`` whose ``Content-Length`` (or chunked body so far) is over
  ``MAX_BODY_BYTES`` answers ``413 payload_too_large`` (docs/protocol.md §2 JSON) and the
  connection closes; the body is never read.
- A ``Sec-WebSocket-Protocol`` header that is not ASCII answers 400 before the upgrade
  (daphne decodes it as ASCII and answered 500).
- daphne's own error pages (400 for a header value with a byte RFC 9110 forbids, a
  non-ASCII path or query; 500 and 503) are docs/protocol.md §2 JSON under ``/notify/``
  instead of HTML.
- A connection whose next request's line and headers are not complete within
  ``HEADER_TIMEOUT_SECONDS`` is closed, counted from the connection and, on a kept-alive
  connection, from the end of the previous response (so an idle kept-alive connection
  is closed after that long too). Twisted's only timeout is idle time, reset by every
  byte: one header byte every 5 s kept a socket open for good.

Under any other ASGI server nothing here runs: the consumers and ``NotifyGuard`` apply
the same limits later (after the server has read the body or message).
``check_internals()`` raises when the daphne, Twisted or autobahn internals used here
change; ``tests/test_daphne.py`` calls it.
"""

import asyncio
import functools
import logging

from ..conf import notify_settings


def protocol_of(send):
    """Return daphne's protocol object (autobahn ``WebSocketServerProtocol`` or Twisted
    ``Request``) behind an ASGI ``send``, or None under another server.

    Sees through Channels' ``SessionMiddleware``, which hands a cookie-authenticated
    consumer its own ``send`` method and keeps daphne's as ``real_send`` (without this,
    browsers' connections lost the direct socket writes and the slow-client bound).
    """
    for _ in range(8):
        if isinstance(send, functools.partial):
            return send.args[0] if send.args else None
        send = getattr(getattr(send, "__self__", None), "real_send", None)
        if send is None:
            return None
    return None


def close_websocket(send, code: int, reason: str) -> bool:
    """Close the WebSocket behind ``send`` with any ``code`` and ``reason`` (daphne lets
    an application close with 1000 or 3000-4999 only and drops the reason; autobahn's
    ``sendCloseFrame`` writes the same frame without that check). Returns False (nothing
    done) under another server; True also when the socket was no longer open."""
    protocol = protocol_of(send)
    if not hasattr(protocol, "sendCloseFrame") or not hasattr(protocol, "STATE_OPEN"):
        return False
    if protocol.state == protocol.STATE_OPEN:
        protocol.sendCloseFrame(code=code, reasonUtf8=reason.encode()[:123], isReply=False)
    return True


def receive_queue(receive) -> asyncio.Queue | None:
    """Return the ``asyncio.Queue`` whose ``get`` is the ASGI ``receive`` (daphne and
    Channels' test communicators), or None."""
    queue = getattr(receive, "__self__", None)
    if isinstance(queue, asyncio.Queue) and getattr(receive, "__name__", "") == "get":
        return queue
    return None


def closed_while_sending(exc: BaseException) -> bool:
    """Whether ``exc`` is autobahn's refusal to send on a WebSocket that has closed (the
    client went away mid-send; its ``websocket.disconnect`` follows)."""
    try:
        from autobahn.exception import Disconnected
    except ImportError:  # another server
        return False
    return isinstance(exc, Disconnected)


def drop(send) -> bool:
    """Abort the connection behind ``send`` at once, without a closing handshake (a
    client too slow to read); return whether it could be done."""
    protocol = protocol_of(send)
    if protocol is None:
        return False
    if hasattr(protocol, "dropConnection"):  # autobahn's WebSocket protocol
        protocol.dropConnection(abort=True)
        return True
    transport = getattr(protocol, "transport", None)
    if transport is not None and hasattr(transport, "abortConnection"):
        transport.abortConnection()
        return True
    return False


class SocketWriter:
    """Write pre-encoded WebSocket frames of one daphne connection straight to its socket.

    Why: going through daphne (``send`` -> autobahn -> Twisted) costs, per frame and
    connection, a UTF-8 encode, the framing, and a writer registration with the event
    loop (two ``epoll_ctl`` calls); at 10,000 connections that was most of a broadcast's
    CPU. A frame encoded once per process (``Push.ws_wire``) and written with one
    ``send()`` costs a syscall. Order is kept: while Twisted still holds unsent bytes
    for the connection, the frame is queued behind them with ``transport.write``.

    Use ``SocketWriter.for_send(send)``: it returns None (callers use ``send``) unless
    the connection is daphne's plain TCP (no TLS in daphne, no permessage-deflate).
    """

    __slots__ = ("protocol", "transport")

    def __init__(self, protocol, transport):
        self.protocol = protocol
        self.transport = transport

    @classmethod
    def for_send(cls, send) -> "SocketWriter | None":
        protocol = protocol_of(send)
        transport = getattr(protocol, "transport", None)
        if (
            type(transport).__module__ != "twisted.internet.tcp"
            or getattr(transport, "TLS", True) is not False
            or getattr(protocol, "_perMessageCompress", True) is not None
            or not hasattr(protocol, "STATE_OPEN")
        ):
            return None
        return cls(protocol, transport)

    def write(self, frame: bytes) -> bool:
        """Write one complete frame; return False (nothing written) when the
        WebSocket is not open or is mid-message, so the caller falls back to ``send``."""
        protocol, transport = self.protocol, self.transport
        if (
            protocol.state != protocol.STATE_OPEN
            or protocol.send_state != protocol.SEND_STATE_GROUND
            or not transport.connected
            or transport.disconnecting
        ):
            return False
        if transport._tempDataLen or transport.offset < len(transport.dataBuffer):
            transport.write(frame)
            return True
        try:
            sent = transport.socket.send(frame)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            return False
        if sent < len(frame):
            transport.write(frame[sent:])
        return True


def buffered_bytes(send) -> int | None:
    """Return the bytes a connection has queued but not yet written to its socket.

    Args:
        send: the ASGI ``send`` callable of the connection. Under daphne it is
            ``functools.partial(server.handle_reply, protocol)``, whose Twisted
            transport keeps the write buffer.
    Returns:
        The byte count, or None where it cannot be known (another server, tests).
    """
    transport = getattr(protocol_of(send), "transport", None)
    try:
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    except (AttributeError, TypeError):
        return None


logger = logging.getLogger("notify")

_installed = False


def _under_notify(path: bytes) -> bool:
    """Whether a raw request path is under where ``notify.urls`` is mounted."""
    from ..links import mount_prefix

    return path.startswith(mount_prefix().encode())


def check_internals() -> None:
    """Raise ``RuntimeError`` naming what is missing when daphne, Twisted or autobahn
    no longer have the internals this module relies on."""
    import inspect

    from autobahn.websocket.protocol import WebSocketProtocol as AutobahnProtocol
    from daphne.http_protocol import HTTPFactory, WebRequest
    from daphne.server import Server
    from daphne.ws_protocol import WebSocketProtocol
    from twisted.web.http import HTTPChannel, _genericHTTPChannelProtocolFactory

    problems = []
    run = inspect.getsource(Server.run)
    for needle in ("maxMessagePayloadSize=self.websocket_max_message_size",
                   "maxFramePayloadSize=self.websocket_max_frame_size", "self.timeout_checker"):
        if needle not in run:
            problems.append(f"daphne Server.run no longer passes {needle}")
    for cls, names in ((AutobahnProtocol, ("_max_message_size_exceeded", "_fail_connection", "failByDrop")),
                       (WebRequest, ("process", "gotLength", "handleContentChunk", "finish", "basic_error")),
                       (HTTPFactory, ("buildProtocol",)),
                       (HTTPChannel, ("allHeadersReceived", "lineReceived"))):
        for name in names:
            if not hasattr(cls, name) and name not in inspect.getsource(cls):
                problems.append(f"{cls.__module__}.{cls.__name__}.{name} is gone")
    if "self._fail_connection(" not in inspect.getsource(AutobahnProtocol._max_message_size_exceeded):
        problems.append("autobahn _max_message_size_exceeded no longer fails the connection")
    if "req.gotLength(self.length)" not in inspect.getsource(HTTPChannel.allHeadersReceived):
        problems.append("Twisted HTTPChannel.allHeadersReceived no longer calls gotLength")
    if "_GenericHTTPChannelProtocol(HTTPChannel())" not in inspect.getsource(_genericHTTPChannelProtocolFactory):
        problems.append("Twisted no longer wraps HTTPChannel in _GenericHTTPChannelProtocol(._channel)")
    if "self._path = request" not in inspect.getsource(HTTPChannel.lineReceived):
        problems.append("Twisted HTTPChannel no longer keeps the request path in _path")
    if "self.server.protocol_connected(self)" not in inspect.getsource(WebRequest.__init__):
        problems.append("daphne WebRequest no longer registers itself with the server")
    if 'value.decode("ascii")' not in inspect.getsource(WebSocketProtocol.onConnect):
        problems.append("daphne now decodes Sec-WebSocket-Protocol differently: revisit the 400 guard")
    if problems:
        raise RuntimeError("notify.daphne: " + "; ".join(problems))


def wrap_send(send, hook):
    """Return an ASGI ``send`` that passes each message through ``hook`` first.

    Under daphne, ``send`` is ``functools.partial(server.handle_reply, protocol)``, and
    the hub reaches the connection through ``send.args[0]`` (``SocketWriter``,
    ``buffered_bytes``): the wrapper keeps that shape, so a guarded connection keeps
    its fast path and its send-buffer bound. Under another server it is a plain
    coroutine function.

    Args:
        send: the server's ASGI send callable.
        hook: ``hook(message) -> message``, called before each message is sent.
    """
    if isinstance(send, functools.partial) and send.args:
        async def call(protocol, message):
            return await send(hook(message))

        return functools.partial(call, send.args[0])

    async def plain(message):
        return await send(hook(message))

    return plain


def install() -> None:
    """Adjust daphne's classes as the module docstring says; idempotent. Does nothing
    when daphne is not installed."""
    global _installed
    if _installed:
        return
    try:
        from daphne.http_protocol import HTTPFactory, WebRequest
        from daphne.server import Server
        from daphne.ws_protocol import WebSocketProtocol
    except ImportError:  # another ASGI server
        return
    _installed = True
    _wrap(Server, "run", _server_run)
    WebSocketProtocol._max_message_size_exceeded = _message_too_large
    _wrap(WebRequest, "process", _process)
    _wrap(WebRequest, "gotLength", _got_length)
    _wrap(WebRequest, "handleContentChunk", _handle_content_chunk)
    _wrap(WebRequest, "finish", _finish)
    _wrap(WebRequest, "basic_error", _basic_error)
    _wrap(HTTPFactory, "buildProtocol", _build_protocol)


def _wrap(cls, name, wrapper) -> None:
    original = getattr(cls, name)

    def method(self, *args, **kwargs):
        return wrapper(original, self, *args, **kwargs)

    method.__name__ = name
    method.__doc__ = wrapper.__doc__
    method.__wrapped__ = original  # inspect.getsource (check_internals) reads the original
    setattr(cls, name, method)


# WebSocket


def _server_run(original, server):
    """``Server.run``: autobahn refuses messages and frames over ``MAX_FRAME_BYTES``."""
    server.websocket_max_message_size = notify_settings.MAX_FRAME_BYTES
    server.websocket_max_frame_size = notify_settings.MAX_FRAME_BYTES
    return original(server)


def _message_too_large(self, size, limit, reason) -> None:
    """autobahn's hook for a message or frame over the limit: close with 4009 (and a
    close frame) instead of autobahn's 1009 (and, with daphne's options, a TCP drop)."""
    from ..transports.websocket import CLOSE_TOO_LARGE

    logger.info("notify: closing WebSocket of %s with %d: %s", getattr(self, "client_addr", None),
                CLOSE_TOO_LARGE, reason)
    self.failByDrop = False
    self._fail_connection(CLOSE_TOO_LARGE, f"message over {limit} bytes")


# HTTP


def _process(original, request):
    """``WebRequest.process``: nothing for a refused body; 400 for a non-ASCII
    ``Sec-WebSocket-Protocol``."""
    if getattr(request, "_notify_refused", False):
        return None
    for value in request.requestHeaders.getRawHeaders(b"sec-websocket-protocol") or ():
        if not value.isascii():
            logger.info("notify: WebSocket refused (non-ASCII Sec-WebSocket-Protocol); client=%r",
                        request.getClientAddress())
            request.basic_error(400, b"Bad Request", "Invalid Sec-WebSocket-Protocol header")
            return None
    return original(request)


def _basic_error(original, request, status, status_text, body):
    """``WebRequest.basic_error``: under ``/notify/``, docs/protocol.md §2 JSON instead of HTML."""
    if not _under_notify(request.uri or b""):
        return original(request, status, status_text, body)
    from ..http.errors import error_body
    from ..transports.http import JSON_HEADERS

    code = "bad_request" if status < 500 else "server_error"
    request.handle_reply({"type": "http.response.start", "status": status,
                          "headers": [*JSON_HEADERS, (b"x-content-type-options", b"nosniff")]})
    request.handle_reply({"type": "http.response.body", "body": error_body(code, body)})
    return None


def _body_limited(request) -> bool:
    path = getattr(request.channel, "_path", b"") or b""
    return _under_notify(path)


def _got_length(original, request, length):
    """``WebRequest.gotLength``: the headers are complete; refuse a declared body over
    ``MAX_BODY_BYTES`` before reading it."""
    channel = request.channel
    channel._notify_headers = getattr(channel, "_notify_headers", 0) + 1
    request._notify_body_bytes = 0
    original(request, length)
    if length is not None and length > notify_settings.MAX_BODY_BYTES and _body_limited(request):
        _refuse_body(request)


def _handle_content_chunk(original, request, data):
    """``WebRequest.handleContentChunk``: count a body without ``Content-Length``
    (chunked) and refuse it once over ``MAX_BODY_BYTES``."""
    if getattr(request, "_notify_refused", False):
        return None
    request._notify_body_bytes = getattr(request, "_notify_body_bytes", 0) + len(data)
    if request._notify_body_bytes > notify_settings.MAX_BODY_BYTES and _body_limited(request):
        return _refuse_body(request)
    return original(request, data)


def _refuse_body(request) -> None:
    """Answer 413 as docs/protocol.md §2 JSON straight on the socket and close the connection
    (Twisted stops reading at once: the rest of the body is never read)."""
    from ..http.errors import error_body

    request._notify_refused = True
    limit = notify_settings.MAX_BODY_BYTES
    body = error_body("payload_too_large", f"The request body is over {limit} bytes.")
    head = (
        "HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
        "X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n"
    )
    transport = request.channel.transport
    logger.info("notify: request body over %d bytes refused before reading; client=%r", limit,
                request.getClientAddress())
    transport.write(head.encode() + body)
    transport.loseConnection()


def _build_protocol(original, factory, addr):
    """``HTTPFactory.buildProtocol``: the first request's headers have
    ``HEADER_TIMEOUT_SECONDS`` from now."""
    protocol = original(factory, addr)
    # Twisted wraps the HTTPChannel in a _GenericHTTPChannelProtocol (for HTTP/2).
    _arm_header_deadline(getattr(protocol, "_channel", protocol))
    return protocol


def _finish(original, request):
    """``WebRequest.finish``: on a kept-alive connection, the next request's headers
    have ``HEADER_TIMEOUT_SECONDS`` from now."""
    channel = request.channel
    original(request)
    if channel is not None:
        _arm_header_deadline(channel)


def _arm_header_deadline(channel) -> None:
    from twisted.internet import reactor

    reactor.callLater(notify_settings.HEADER_TIMEOUT_SECONDS, _header_deadline, channel,
                      getattr(channel, "_notify_headers", 0))


def _header_deadline(channel, headers_seen: int) -> None:
    """Close ``channel`` unless a request's headers completed since the deadline was set."""
    if getattr(channel, "_notify_headers", 0) != headers_seen:
        return
    transport = channel.transport
    if transport is None or not getattr(transport, "connected", False) or transport.disconnecting:
        return
    logger.info("notify: closing connection of %s: no complete request headers in %s s",
                transport.getPeer(), notify_settings.HEADER_TIMEOUT_SECONDS)
    transport.abortConnection()
