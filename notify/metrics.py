"""Prometheus metrics of notify (``prometheus_client``), served at ``<prefix>metrics``.

Each server process exposes its own metrics from its own in-process registry (no
multiprocess mode): every daphne process is a separate server with its own port, so
Prometheus scrapes each one as a target of its own (``instance`` label) and sums in its
queries. ``prometheus_client``'s multiprocess mode exists for pre-forked workers that
share one port (gunicorn), where a scrape reaches a random worker; it needs a shared
directory and cannot serve live gauges such as ``notify_connections``.

Names (labels in braces), see docs/deploy.md:

- ``notify_connections{transport}``: gauge, open connections registered with the hub
  (``websocket``, ``sse``, ``longpoll``: held polls).
- ``notify_handshakes_total{result}``: WebSocket handshakes (``accepted``,
  ``refused_auth``, ``refused_origin``, ``refused_overload``).
- ``notify_entries_total{kind}``: committed stream entries (``personal``,
  ``announcement``), counted by the process that stored them.
- ``notify_deliveries_total{transport}``: live deliveries written: WebSocket frames,
  SSE events, long-poll responses.
- ``notify_delivery_latency_seconds``: histogram, from an entry's commit (the time
  carried in the channel-layer message) to its frame being written.
- ``notify_hub_gap_fills_total``: database reads of a gap in the id sequence.
- ``notify_resyncs_total``: catch-ups from the database after a channel-layer outage.
- ``notify_slow_clients_dropped_total``: connections closed for not reading.
- ``notify_api_requests_total{endpoint,status}``: requests to the HTTP API under
  ``<prefix>api/`` by URL name (``notifications``, ``unread-count``, ``read``,
  ``send``, ``announce``) and HTTP status; counted by ``ApiMetricsMiddleware``, which
  the host adds to ``MIDDLEWARE``.
- ``notify_channel_layer_up``: gauge, 1 when the channel layer answers (see
  ``notify.health``), set at each scrape and readiness check.
"""

import time
from collections.abc import Iterable

from django.utils.deprecation import MiddlewareMixin
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily

TRANSPORTS = ("websocket", "sse", "longpoll")
HANDSHAKE_RESULTS = ("accepted", "refused_auth", "refused_origin", "refused_overload")
ENTRY_KINDS = ("personal", "announcement")

CONNECTIONS = Gauge("notify_connections", "Open connections registered with the hub.", ["transport"])
HANDSHAKES = Counter("notify_handshakes", "WebSocket handshakes by result.", ["result"])
ENTRIES = Counter("notify_entries", "Committed stream entries by kind.", ["kind"])
DELIVERIES = Counter(
    "notify_deliveries", "Live deliveries written (WebSocket frames, SSE events, long-poll responses).",
    ["transport"],
)
DELIVERY_LATENCY = Histogram(
    "notify_delivery_latency_seconds", "Seconds from an entry's commit to its frame being written.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
SLOW_CLIENTS_DROPPED = Counter("notify_slow_clients_dropped", "Connections closed for not reading.")
API_REQUESTS = Counter("notify_api_requests", "HTTP API requests by endpoint and status.", ["endpoint", "status"])
CHANNEL_LAYER_UP = Gauge("notify_channel_layer_up", "1 when the channel layer answers, else 0.")

# Every label value exists from the start (at 0), so dashboards and rate() see it.
_CONNECTIONS = {t: CONNECTIONS.labels(t) for t in TRANSPORTS}
_DELIVERIES = {t: DELIVERIES.labels(t) for t in TRANSPORTS}
for _result in HANDSHAKE_RESULTS:
    HANDSHAKES.labels(_result)
for _kind in ENTRY_KINDS:
    ENTRIES.labels(_kind)


def connection_opened(transport: str) -> None:
    """A connection registered with the hub (``transport``: one of ``TRANSPORTS``)."""
    _CONNECTIONS[transport].inc()


def connection_closed(transport: str) -> None:
    """A registered connection left the hub."""
    _CONNECTIONS[transport].dec()


def handshake(result: str) -> None:
    """Count one WebSocket handshake with ``result`` (see ``HANDSHAKE_RESULTS``)."""
    HANDSHAKES.labels(result).inc()


def entries_committed(entries: Iterable) -> None:
    """Count freshly committed ``Entry`` rows by kind (announcements have no recipient)."""
    personal = announcements = 0
    for entry in entries:
        if entry.recipient_id is None:
            announcements += 1
        else:
            personal += 1
    if personal:
        ENTRIES.labels("personal").inc(personal)
    if announcements:
        ENTRIES.labels("announcement").inc(announcements)


def delivered(transport: str, pushes: list, responses: int | None = None) -> None:
    """Count what a transport wrote: one delivery per push (WebSocket frame, SSE event),
    or ``responses`` (long-poll), and observe each push's commit-to-write latency.

    Args:
        pushes: ``notify.realtime.frames.Push`` objects; those without a commit time (read from the
            database by the tail or a gap fill) count but are not timed.
    """
    if not pushes:
        return
    _DELIVERIES[transport].inc(len(pushes) if responses is None else responses)
    now = time.time()
    for push in pushes:
        if push.committed:
            DELIVERY_LATENCY.observe(max(0.0, now - push.committed))


def slow_client_dropped() -> None:
    """Count one connection closed because its unsent bytes passed the limit."""
    SLOW_CLIENTS_DROPPED.inc()


class HubCollector:
    """Counters kept by the hubs themselves, read at scrape time:
    ``notify_hub_gap_fills_total`` (``Sequencer.gap_fills``) and
    ``notify_resyncs_total`` (``Hub.catch_ups``), summed over the process's hubs
    (one per event loop)."""

    def describe(self):
        """The families without samples (the registry asks at registration, before any
        hub exists and while ``notify.realtime`` may still be importing)."""
        return self._families([])

    def collect(self):
        from .realtime.hub import all_hubs

        return self._families(all_hubs())

    @staticmethod
    def _families(hubs):
        gap_fills = CounterMetricFamily(
            "notify_hub_gap_fills", "Database reads of a gap in the stream id sequence."
        )
        gap_fills.add_metric([], sum(hub.sequencer.gap_fills for hub in hubs))
        resyncs = CounterMetricFamily(
            "notify_resyncs", "Catch-ups from the database after a channel-layer outage."
        )
        resyncs.add_metric([], sum(hub.catch_ups for hub in hubs))
        return [gap_fills, resyncs]


HUBS = HubCollector()
REGISTRY.register(HUBS)


def api_endpoint(request) -> str | None:
    """Return the API endpoint name of a routed request (the ``notify`` URL name without
    its ``api-`` prefix), or None for anything else."""
    match = getattr(request, "resolver_match", None)
    if match is None or "notify" not in match.namespaces or not (match.url_name or "").startswith("api-"):
        return None
    return match.url_name.removeprefix("api-")


class ApiMetricsMiddleware(MiddlewareMixin):
    """Django middleware: count each HTTP API request in
    ``notify_api_requests_total{endpoint,status}`` (sync and async)."""

    def process_response(self, request, response):
        endpoint = api_endpoint(request)
        if endpoint is not None:
            API_REQUESTS.labels(endpoint, str(response.status_code)).inc()
        return response
