"""``notify.realtime.daphne`` relies on daphne's, autobahn's and Twisted's internals:
these tests fail loudly, naming what changed, when an upgrade moves them. (The
slow-client and fan-out end-to-end tests exercise the same paths on a real daphne.)"""

import asyncio
import functools
import inspect

from autobahn.websocket.protocol import WebSocketProtocol
from daphne.server import Server
from twisted.internet import abstract, tcp

from notify.realtime import daphne


def test_daphne_hands_the_application_a_partial_of_handle_reply_with_the_protocol():
    source = inspect.getsource(Server.create_application)
    assert "send=partial(self.handle_reply, protocol)" in source, "daphne's ASGI send changed shape"


def test_twisted_keeps_its_write_buffer_where_socket_writer_reads_it():
    source = inspect.getsource(abstract.FileDescriptor)
    for name in ("self.dataBuffer", "self.offset", "self._tempDataLen", "def doWrite"):
        assert name in source, f"twisted FileDescriptor lost {name}"
    assert hasattr(tcp.Connection, "abortConnection")
    assert "TLS = False" in inspect.getsource(tcp.Connection) or hasattr(tcp.Connection, "TLS")


def test_autobahn_protocol_states_and_abort_exist():
    for name in ("STATE_OPEN", "SEND_STATE_GROUND", "dropConnection"):
        assert hasattr(WebSocketProtocol, name), f"autobahn WebSocketProtocol lost {name}"
    source = inspect.getsource(WebSocketProtocol)
    for name in ("self.send_state", "self._perMessageCompress"):
        assert name in source, f"autobahn WebSocketProtocol lost {name}"


def test_plain_fallbacks_under_another_server():
    async def send(message):
        pass

    assert daphne.protocol_of(send) is None
    assert daphne.SocketWriter.for_send(send) is None
    assert daphne.buffered_bytes(send) is None
    assert daphne.drop(send) is False
    assert daphne.receive_queue(lambda: None) is None
    queue = asyncio.Queue()
    assert daphne.receive_queue(queue.get) is queue


def test_the_protocol_is_found_behind_daphnes_send():
    protocol = object()
    send = functools.partial(lambda protocol, message: None, protocol)
    assert daphne.protocol_of(send) is protocol
