"""Graceful drain: on SIGTERM or SIGINT, move every client to another process, then exit.

What a stopping process does (``DRAIN_SECONDS``, default 10 s, is the window):

1. At once: ``readyz`` answers 503 ``{"down": ["draining"]}``, so the load balancer
   stops sending new connections here.
2. Every open connection is told to reconnect elsewhere after its own random delay in
   ``[0, DRAIN_SECONDS)`` (so the other processes see the reconnects spread over the
   window, not all at once), with the cursor it has:

   - WebSocket: close code 1012 ("service restart", RFC 6455 §7.4.1 as registered by
     IANA) with the reason ``{"reconnect_ms": <delay>}``;
   - SSE: ``retry: <delay>`` and ``event: reconnect`` with ``data: {"reconnect_ms":
     <delay>}``, then the response ends;
   - held long-poll: answered at once, ``{"cursor": <its since>, "unread": ...,
     "notifications": [], "reconnect_ms": <delay>}``.

   Connections that still arrive during the window (the balancer has not noticed yet)
   are told the same as soon as their first frames are out.
3. When the window and ``CLOSE_GRACE_SECONDS`` have passed and no connection is left
   (at most ``LINGER_SECONDS`` more; new arrivals are still told meanwhile), the signal
   goes to the server's own handler (daphne: Twisted stops
   the reactor, which ends the process).

A second signal during the window skips the rest of it. Daphne's own shutdown would
cut every connection at once, so the handlers replace daphne's after the reactor
starts (``install_under_daphne``, called from ``NotifyConfig.ready``). Another ASGI
server: call ``install()`` from its event loop at start-up.
"""

import asyncio
import json
import logging
import os
import random
import signal
import sys
import time

from .conf import notify_settings
from .logging import log_fields

logger = logging.getLogger("notify")

SIGNALS = (signal.SIGTERM, signal.SIGINT)
# WebSocket close code "Service Restart" (IANA WebSocket Close Code Number Registry).
CLOSE_SERVICE_RESTART = 1012
# How often the drain looks for connections that are not yet told (seconds).
DRAIN_POLL_SECONDS = 0.1
# After the window, how long the last told connections get to finish closing, while
# new arrivals are still told (seconds).
CLOSE_GRACE_SECONDS = 1.0
# After that, how much longer the process waits (seconds, at most) while connections are
# still open: one whose handshake was in progress at the deadline on a busy machine is
# told and closes with 1012 instead of being cut (1006) by the exit.
LINGER_SECONDS = 5.0


class _State:
    draining = False
    started = 0.0  # time.monotonic() of the signal
    previous: dict = {}  # signal number -> the handler ``install`` replaced
    task: asyncio.Task | None = None
    loop: asyncio.AbstractEventLoop | None = None


_state = _State()


def draining() -> bool:
    """Whether this process is draining (a stop signal arrived)."""
    return _state.draining


def reconnect_delay_ms() -> int:
    """Return a client's suggested reconnect delay: uniform in ``[0, DRAIN_SECONDS)``,
    in whole milliseconds."""
    return int(random.random() * float(notify_settings.DRAIN_SECONDS) * 1000)


def reconnect_reason(delay_ms: int) -> str:
    """Return the JSON text that carries ``delay_ms`` to a client (WebSocket close
    reason, SSE ``data:``): ``{"reconnect_ms": <delay_ms>}``."""
    return json.dumps({"reconnect_ms": delay_ms}, separators=(",", ":"))


async def close_for_restart(send, delay_ms: int) -> None:
    """Close a WebSocket with code 1012 and ``reconnect_reason(delay_ms)``: under daphne
    through ``notify.realtime.daphne.close_websocket`` (daphne itself refuses 1012 and
    drops reasons), elsewhere with ASGI ``websocket.close`` and its ``reason``."""
    from .realtime import daphne

    reason = reconnect_reason(delay_ms)
    if not daphne.close_websocket(send, CLOSE_SERVICE_RESTART, reason):
        await send({"type": "websocket.close", "code": CLOSE_SERVICE_RESTART, "reason": reason})


def install(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Handle SIGTERM and SIGINT by draining (see module doc); the handlers they
    replace get the signal once the drain is over. Idempotent.

    Args:
        loop: the event loop the connections run on; default: the running one (or the
            thread's current one).
    """
    if _state.loop is not None:
        return
    if loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = asyncio.get_event_loop()
    _state.loop = loop
    for signum in SIGNALS:
        _state.previous[signum] = signal.getsignal(signum)
        signal.signal(signum, _on_signal)


def install_under_daphne() -> None:
    """When running under daphne (its Twisted reactor is imported), ``install`` as soon
    as the reactor runs, after Twisted has set its own handlers. Elsewhere nothing."""
    if "daphne.server" not in sys.modules or "twisted.internet.reactor" not in sys.modules:
        return
    from twisted.internet import reactor

    reactor.callWhenRunning(install)


def _on_signal(signum, frame) -> None:
    if _state.draining:
        logger.warning("notify: second stop signal; stopping now", extra=log_fields("drain.skipped", signal=signum))
        _state.loop.call_soon_threadsafe(_hand_over, signum)
        return
    _state.draining = True  # readyz says 503 from here on
    _state.loop.call_soon_threadsafe(start, signum)


def start(signum: int | None = None) -> asyncio.Task:
    """Begin draining on the running loop (what a stop signal does) and return the
    task; when it ends, ``signum`` (if any) goes to the replaced handler."""
    _state.draining = True
    if _state.task is None:
        _state.started = time.monotonic()
        _state.task = asyncio.ensure_future(_drain(signum))
    return _state.task


def reset() -> None:
    """Forget a drain (tests)."""
    if _state.task is not None and not _state.task.done():
        _state.task.cancel()
    _state.draining = False
    _state.task = None


async def _drain(signum: int | None) -> None:
    from .realtime.hub import get_hub

    window = float(notify_settings.DRAIN_SECONDS)
    hub = get_hub()
    logger.info(
        "notify: draining %d connections over %.1f s", hub.count, window,
        extra=log_fields("drain.started", connections=hub.count, window_seconds=window, signal=signum),
    )
    # Tell connections through the window and the grace after it (the last ones told
    # finish their closing handshakes meanwhile).
    deadline = _state.started + window + CLOSE_GRACE_SECONDS
    told = 0
    while True:
        for link in hub.links():
            if link.pending is None:  # its first frames are out
                told += 1
                try:
                    await link.sink.drain(reconnect_delay_ms())
                except Exception:
                    logger.exception("notify: drain of a connection failed", extra=log_fields("drain.failed", link.sink))
        now = time.monotonic()
        if now >= deadline and (hub.count == 0 or now >= deadline + LINGER_SECONDS):
            break
        await asyncio.sleep(DRAIN_POLL_SECONDS)
    logger.info(
        "notify: drained %d connections; stopping", told,
        extra=log_fields("drain.finished", told=told, left=hub.count, signal=signum),
    )
    if signum is not None:
        _hand_over(signum)


def _hand_over(signum: int) -> None:
    """Pass ``signum`` to the handler ``install`` replaced (daphne: stop the reactor)."""
    previous = _state.previous.get(signum, signal.SIG_DFL)
    if callable(previous) and previous is not signal.default_int_handler:
        previous(signum, None)
    elif previous != signal.SIG_IGN:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
