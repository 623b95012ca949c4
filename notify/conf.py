"""App settings: one ``NOTIFY`` dict in Django settings over documented defaults."""

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Channel layer alias used for pushes between processes.
    "CHANNEL_LAYER_ALIAS": "default",
    # Path of the WebSocket route that ``notify.asgi.get_application`` serves (under the
    # script prefix); starts and ends with "/".
    "WEBSOCKET_PATH": "/ws/notify/",
    # Seconds of silence after which a WebSocket gets a ``ping`` frame and an SSE
    # stream a ``: ping`` comment.
    "HEARTBEAT_SECONDS": 25,
    # Items replayed after ``since`` at most; past it the client gets ``reset``.
    "BACKLOG_LIMIT": 500,
    # Largest client WebSocket message in bytes (after reassembly); larger closes 4009.
    "MAX_FRAME_BYTES": 64 * 1024,
    # Largest ``data`` object in bytes, as UTF-8 compact JSON.
    "MAX_DATA_BYTES": 8 * 1024,
    # Largest HTTP request body in bytes of notify's HTTP APIs; larger answers 413.
    "MAX_BODY_BYTES": 64 * 1024,
    # Longest ``title`` and ``body`` in characters.
    "MAX_TITLE_LENGTH": 200,
    "MAX_BODY_LENGTH": 10_000,
    # Most ids in one ``read`` request or frame.
    "MAX_READ_IDS": 1000,
    # Most recipients in one send (Python API and HTTP send API).
    "MAX_RECIPIENTS": 10_000,
    # Long-poll: default and largest ``timeout`` in seconds; default and largest ``limit``.
    "POLL_TIMEOUT": 25,
    "POLL_MAX_TIMEOUT": 55,
    "POLL_LIMIT": 100,
    "POLL_MAX_LIMIT": 500,
    # Inbox list: default and largest page size.
    "INBOX_LIMIT": 50,
    "INBOX_MAX_LIMIT": 200,
    # SSE ``retry:`` field sent with the first event, in milliseconds.
    "SSE_RETRY_MS": 3000,
    # Requests a service key may make to send/ and announce/ (django-ratelimit rate).
    "SERVICE_RATE_LIMIT": "600/m",
    # Mark-read requests (WebSocket read/read_all frames and POST read/) per user.
    "CLIENT_RATE_LIMIT": "300/m",
    # Bytes a connection may have queued unsent before it is closed as too slow (it
    # resumes later with its cursor).
    "MAX_SEND_BUFFER_BYTES": 1024 * 1024,
    # Seconds between two checks of the newest committed id by each process's hub, which
    # then delivers what no push announced (writes from other processes on the
    # in-memory layer, pushes lost by Redis). None: 1 s on the in-memory layer, 3 s on
    # a shared one; 0: off.
    "DB_TAIL_SECONDS": None,
    # Open WebSockets, SSE streams and held long-polls of one user in one server
    # process; past it a handshake is refused (403) and a stream or poll gets 429.
    "MAX_CONNECTIONS_PER_USER": 100,
    # WebSocket handshakes in progress at once from one client address (behind a
    # proxy, run daphne with --proxy-headers so that this is the real client); past
    # it a handshake is refused (403). 0 turns the cap off.
    "MAX_HANDSHAKES_PER_CLIENT": 50,
    # Seconds a client may take to send a request's line and headers under daphne,
    # counted from the connection or, on a kept-alive connection, from the end of the
    # previous response; then the connection is closed (see notify/daphne.py).
    "HEADER_TIMEOUT_SECONDS": 30,
    # Graceful drain on SIGTERM/SIGINT (notify.drain): the window in seconds over which
    # the clients of a stopping process are told to reconnect elsewhere (each gets a
    # random delay in it), and how long the process keeps answering before it exits.
    "DRAIN_SECONDS": 10,
    # Bearer token for <prefix>metrics (Prometheus). None: the endpoint answers 404.
    "METRICS_TOKEN": None,
    # Delivery receipts (notify.receipts): HTTP acks per user (django-ratelimit rate);
    # WebSocket acks are coalesced per device and written every ACK_FLUSH_SECONDS.
    "ACK_RATE_LIMIT": "600/m",
    "ACK_FLUSH_SECONDS": 0.5,
    # Per-user preferences (notify.preferences): the lists a user has before any PUT;
    # shell-style kind patterns (fnmatch.fnmatchcase).
    "DEFAULT_MUTED": [],
    "DEFAULT_NO_PUSH": [],
    # Web Push (notify.webpush). Without a VAPID private key (the 32-byte P-256 scalar in
    # base64url, or PEM) Web Push is off. The subject is a mailto: or https URL.
    "WEBPUSH_VAPID_PRIVATE_KEY": None,
    "WEBPUSH_VAPID_SUBJECT": "mailto:notify@example.invalid",
    # Seconds an item may stay unacknowledged by every device before it is pushed.
    "WEBPUSH_AFTER_SECONDS": 30,
    # The push's TTL header (seconds the push service keeps it for an offline device).
    "WEBPUSH_TTL_SECONDS": 86400,
    # Tests only: admit http:// and loopback endpoints.
    "WEBPUSH_ALLOW_INSECURE_ENDPOINTS": False,
    # notify_escalate: subscriptions read per batch, pushes per second at most (per
    # process), concurrent requests, seconds per push request, seconds between passes,
    # and the age (seconds) past which an unacknowledged item is no longer pushed.
    "WEBPUSH_BATCH_SIZE": 500,
    "WEBPUSH_RATE": 500,
    "WEBPUSH_WORKERS": 16,
    "WEBPUSH_TIMEOUT_SECONDS": 5,
    "WEBPUSH_POLL_SECONDS": 1.0,
    "WEBPUSH_MAX_AGE_SECONDS": 86400,
}


class NotifySettings:
    """Read ``settings.NOTIFY[name]`` over ``DEFAULTS[name]`` on every access.

    Reading each time is cheap and keeps ``override_settings`` and pytest-django's
    ``settings`` fixture working without a cache to reset.

    Raises:
        AttributeError: ``name`` is not a notify setting.
    """

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"Invalid notify setting: {name!r}")
        return getattr(settings, "NOTIFY", {}).get(name, DEFAULTS[name])


notify_settings = NotifySettings()
