"""Operator endpoints: ``<prefix>healthz``, ``<prefix>readyz`` and ``<prefix>metrics``.

``<prefix>`` is where ``notify.urls`` is mounted (this repository: ``/notify/``). All
three are async views that run on the server's event loop, so a load balancer can call
them every second; none needs a session or CSRF token.

- ``healthz``: ``200 {"alive": true}``, no I/O: the process and its event loop answer.
- ``readyz``: ``200 {"ready": true, "down": []}`` when the database answers and the
  channel layer is subscribed; otherwise ``503 {"ready": false, "down": [...]}`` naming
  ``"database"``, ``"channel_layer"`` and/or ``"draining"`` (after SIGTERM, see
  ``notify.drain``). Each check is bounded by ``CHECK_TIMEOUT_SECONDS``.
- ``metrics``: the Prometheus text format (``notify.metrics``). With
  ``NOTIFY["METRICS_TOKEN"]`` unset it answers ``404 not_found`` (off); with it set it
  needs ``Authorization: Bearer <that token>`` (``401 not_authenticated`` otherwise).
"""

import asyncio
import hmac
import logging

from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from . import drain, metrics
from .conf import notify_settings
from .realtime.hub import all_hubs
from .logging import log_fields

logger = logging.getLogger("notify")

# The longest a readiness check waits for the database or the channel layer (seconds).
CHECK_TIMEOUT_SECONDS = 1.0
# The group a readiness probe publishes to when no hub listens (nobody is in it).
PROBE_GROUP = "notify.health"


def _ping_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def database_up() -> bool:
    """Whether the default database answers ``SELECT 1`` within the timeout."""
    try:
        await asyncio.wait_for(
            database_sync_to_async(_ping_database, thread_sensitive=False)(), CHECK_TIMEOUT_SECONDS
        )
        return True
    except Exception:
        logger.warning("notify: readiness: database down", exc_info=True, extra=log_fields("health.database_down"))
        return False


async def channel_layer_up() -> bool:
    """Whether the channel layer works, and set ``notify_channel_layer_up``.

    While a hub of this process listens, the answer is whether its subscription stands
    (``Hub.subscribed``); with no connection open nobody listens, and a
    ``group_send`` to an empty group (one round trip to Redis) is the probe. The
    in-memory layer is always up.
    """
    layer = get_channel_layer(notify_settings.CHANNEL_LAYER_ALIAS)
    if layer is None:
        up = False
    elif isinstance(layer, InMemoryChannelLayer):
        up = True
    else:
        listening = [hub for hub in all_hubs() if hub.listening]
        if listening:
            up = all(hub.subscribed for hub in listening)
        else:
            try:
                await asyncio.wait_for(layer.group_send(PROBE_GROUP, {"type": "notify.probe"}), CHECK_TIMEOUT_SECONDS)
                up = True
            except Exception:
                up = False
    metrics.CHANNEL_LAYER_UP.set(1 if up else 0)
    return up


@never_cache
async def healthz(request):
    return JsonResponse({"alive": True})


@never_cache
async def readyz(request):
    down = []
    if drain.draining():
        down.append("draining")
    database, layer = await asyncio.gather(database_up(), channel_layer_up())
    if not database:
        down.append("database")
    if not layer:
        down.append("channel_layer")
    return JsonResponse({"ready": not down, "down": down}, status=503 if down else 200)


@never_cache
async def metrics_view(request):
    from .http.errors import error_response

    token = notify_settings.METRICS_TOKEN
    if not token:
        return error_response(404, "not_found", "Metrics are off (NOTIFY['METRICS_TOKEN'] is not set).")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        return error_response(401, "not_authenticated", "Send Authorization: Bearer <the metrics token>.",
                              {"WWW-Authenticate": 'Bearer realm="notify-metrics"'})
    await channel_layer_up()
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)

