"""The Python send API (docs/protocol.md §6): what other Django apps import."""

from channels.db import database_sync_to_async

from . import services

__all__ = ["send", "asend", "announce", "aannounce"]


def send(recipients, *, title, body="", kind="message", level="info", url="", data=None,
         dedupe_key=None):
    """Store a notification for each recipient; push it live after commit.

    Args:
        recipients: a user, a user id, an iterable of users or ids, a queryset of
            users, or a ``django.contrib.auth.models.Group`` (its members).
        title: 1 to ``MAX_TITLE_LENGTH`` (200) characters.
        body: text, at most ``MAX_BODY_LENGTH`` characters.
        kind: a dotted slug, ``[a-z0-9_.-]``, at most 64 characters.
        level: ``"info"``, ``"success"``, ``"warning"`` or ``"error"``.
        url: a relative or http(s) link, or ``""``.
        data: a JSON object, at most ``MAX_DATA_BYTES`` (8 KiB) as compact UTF-8 JSON;
            ``None`` stores ``{}``.
        dedupe_key: with the same key, a recipient who already has a notification
            under it gets nothing new (its existing notification is returned).
    Returns:
        ``list[Notification]``: one per distinct recipient, in order of first appearance.
    Raises:
        ValueError: ``notify.exceptions.InvalidParameter`` naming the field, or
            ``UnknownRecipient``; nothing is stored for anyone.

    Inside ``transaction.atomic()`` the push waits for the commit; a rollback pushes
    nothing. A lost push is harmless: clients resume from their cursor.
    """
    notifications, _ = services.send(
        recipients, title=title, body=body, kind=kind, level=level, url=url, data=data,
        dedupe_key=dedupe_key,
    )
    return notifications


asend = database_sync_to_async(send)
asend.__doc__ = "The same as ``send``, for async callers (consumers, async views)."


def announce(*, title, body="", level="info", url="", audience=None, expires_at=None):
    """Store one announcement for an audience and push it live after commit.

    Args:
        title, body, level, url: as for ``send``.
        audience: ``None`` for every active user, or a ``Group`` to narrow it to its
            members. Users who join later do not get it.
        expires_at: an aware ``datetime`` in the future after which the announcement is
            no longer delivered, listed or counted; ``None`` never expires.
    Returns:
        The ``Announcement``; its ``id`` is its id in every audience member's stream.
    Raises:
        ValueError: ``InvalidParameter`` naming the field; nothing is stored.

    One row, whatever the audience size.
    """
    return services.announce(
        title=title, body=body, level=level, url=url, audience=audience, expires_at=expires_at
    )


aannounce = database_sync_to_async(announce)
aannounce.__doc__ = "The same as ``announce``, for async callers."
