"""The only module that knows daphne's and Twisted's internals.

Everything here has a plain fallback for any other ASGI server (``None``, ``False``,
or the ASGI path), and ``tests/test_daphne_internals.py`` fails loudly when the daphne,
autobahn or Twisted attributes it relies on change.

Under daphne, a connection's ASGI ``send`` is ``functools.partial(server.handle_reply,
protocol)`` and its ``receive`` is the bound ``get`` of an ``asyncio.Queue``.
"""

import asyncio
import functools


def protocol_of(send):
    """Return daphne's protocol object (autobahn ``WebSocketServerProtocol`` or Twisted
    ``Request``) behind an ASGI ``send``, or None under another server."""
    return send.args[0] if isinstance(send, functools.partial) and send.args else None


def receive_queue(receive) -> asyncio.Queue | None:
    """Return the ``asyncio.Queue`` whose ``get`` is the ASGI ``receive`` (daphne and
    Channels' test communicators), or None."""
    queue = getattr(receive, "__self__", None)
    if isinstance(queue, asyncio.Queue) and getattr(receive, "__name__", "") == "get":
        return queue
    return None


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
