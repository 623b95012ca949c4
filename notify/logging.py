"""Structured logs: every notify log line carries its event and context as fields.

Log calls pass ``extra=log_fields(event, subscriber, **context)``. With the JSON format
(``python-json-logger``) those are keys of the line's JSON object; with the text format
the message itself names them. The format is one setting for the whole process
(``logging_config``; this repository's site reads ``NOTIFY_LOG_FORMAT=json``)::

    {"timestamp": "2026-12-05T01:02:03.456789+00:00", "level": "WARNING",
     "logger": "notify", "message": "notify: WebSocket refused (no valid credentials) ...",
     "event": "websocket.refused", "transport": "websocket", "connection_id": 17,
     "user_id": null, "token_id": null, "client": "10.0.0.7:51234",
     "reason": "no valid credentials", "origin": null}
"""

import itertools
from typing import Any

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_connection_ids = itertools.count(1)


def log_fields(event: str, subscriber=None, **context: Any) -> dict[str, Any]:
    """Return the ``extra`` dict of one log call.

    Args:
        event: dotted name of what happened, e.g. ``"websocket.refused"``.
        subscriber: a transport consumer (a connection), or None; gives ``transport``,
            ``connection_id`` (numbered in the process at its first log line),
            ``user_id`` and ``token_id`` (from its hub ``link``, once authenticated)
            and ``client`` (``"host:port"`` of the peer, from the ASGI scope).
        context: more fields (counts, reasons, ...); JSON-serialisable values.
    """
    fields: dict[str, Any] = {"event": event}
    if subscriber is not None:
        link = getattr(subscriber, "link", None)  # the hub's Connection, once made
        client = (getattr(subscriber, "scope", None) or {}).get("client")
        connection_id = getattr(subscriber, "connection_id", None)
        if connection_id is None:
            connection_id = subscriber.connection_id = next(_connection_ids)
        fields.update(
            transport=getattr(subscriber, "transport", None),
            connection_id=connection_id,
            user_id=link.user_id if link is not None else None,
            token_id=link.token_id if link is not None else None,
            client=f"{client[0]}:{client[1]}" if client else None,
        )
    fields.update(context)
    return fields


def logging_config(fmt: str = "text", level: str = "INFO") -> dict[str, Any]:
    """Return a ``LOGGING`` dict (``logging.config.dictConfig``): one stderr handler on
    the root logger, in ``fmt`` (``"text"`` or ``"json"``), and the ``notify`` loggers
    at ``level``. Django's and daphne's own lines go through the same handler.

    Raises:
        ValueError: ``fmt`` is not one of ``FORMATS``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if fmt == "json":
        formatter = {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(message)s",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": True,
        }
    else:
        formatter = {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"notify": formatter},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "notify"}},
        "root": {"handlers": ["console"]},
        "loggers": {"notify": {"level": level}},
    }
