"""Writes: store entries, mark them read, manage tokens, and push after commit."""

import logging
from collections.abc import Iterable
from datetime import datetime
from functools import partial
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django_ratelimit.core import get_usage

from .conf import notify_settings
from .exceptions import InvalidParameter, RateLimited, UnknownRecipient
from .realtime.broker import publish, publish_entries, read_message, revoke_message
from .locks import lock_streams
from .logging import log_fields
from .preferences import get_prefs, prefs_for
from .models import ANNOUNCEMENT_KIND, Announcement, ApiToken, Entry, Notification, Receipt, StreamState, hash_token
from .selectors import stream_summary, unread_count
from .validation import AnnouncementFields, NotificationFields, check_text, validate

logger = logging.getLogger(__name__)



def resolve_recipients(recipients: Any, *, usernames: bool = False) -> list[int]:
    """Return the user pks named by ``recipients``, distinct, in order of first appearance.

    Args:
        recipients: a user, a user pk (int), an iterable of users or pks, a queryset
            of users, or a ``Group`` (its members, by pk). With ``usernames=True``,
            strings name users by their ``USERNAME_FIELD`` (``username``, or e.g.
            ``email`` for an email-login user model): the HTTP send API and commands.
    Raises:
        InvalidParameter: ``recipients`` is of another type, or names too many users.
        UnknownRecipient: a pk or name matches no user.
    """
    User = get_user_model()
    if isinstance(recipients, Group):
        return list(User.objects.filter(groups=recipients).order_by("pk").values_list("pk", flat=True))
    if isinstance(recipients, QuerySet):
        return list(dict.fromkeys(recipients.values_list("pk", flat=True)))
    if isinstance(recipients, (User, int, str)):
        recipients = [recipients]
    elif not isinstance(recipients, Iterable) or isinstance(recipients, (bytes, dict)):
        raise InvalidParameter("recipients", "must be a user, a user id, an iterable of them, a queryset or a Group")
    named: list[int | str] = []
    for item in recipients:
        if isinstance(item, User):
            named.append(item.pk)
        elif isinstance(item, int) and not isinstance(item, bool):
            named.append(item)
        elif usernames and isinstance(item, str) and item:
            named.append(item)
        else:
            raise InvalidParameter("recipients", f"{item!r} is not a user or user id")
    check_text("recipients", [name for name in named if isinstance(name, str)])
    named = list(dict.fromkeys(named))
    if len(named) > notify_settings.MAX_RECIPIENTS:
        raise InvalidParameter("recipients", f"at most {notify_settings.MAX_RECIPIENTS} recipients")
    # A pk outside the id column's range (64-bit) names no user; the database would
    # reject it rather than find nothing.
    ids = {pk for pk in named if isinstance(pk, int) and 0 < pk < 2**63}
    names = {name for name in named if isinstance(name, str)}
    found_ids = set(User.objects.filter(pk__in=ids).values_list("pk", flat=True)) if ids else set()
    name_field = User.USERNAME_FIELD
    by_name = (
        dict(User.objects.filter(**{f"{name_field}__in": names}).values_list(name_field, "pk")) if names else {}
    )
    result = []
    for item in named:
        pk = by_name.get(item) if isinstance(item, str) else (item if item in found_ids else None)
        if pk is None:
            raise UnknownRecipient(item)
        result.append(pk)
    return list(dict.fromkeys(result))


def send(recipients, *, title, body="", kind="message", level="info", url="", data=None,
         dedupe_key=None, usernames: bool = False) -> tuple[list[Notification], int]:
    """Store a notification for each recipient and push it after commit.

    Args: see ``notify.api.send``; ``usernames=True`` also accepts names
        (``USERNAME_FIELD`` values, see ``resolve_recipients``).
    Returns:
        ``(notifications, created)``: one ``Notification`` per distinct recipient, in
        order of first appearance (with ``dedupe_key``, the one stored earlier under
        that key where it exists), and how many of them this call created.
    Raises:
        InvalidParameter / UnknownRecipient (both ``ValueError``): nothing stored.
    """
    fields = validate(
        NotificationFields,
        {"title": title, "body": body, "kind": kind, "level": level, "url": url, "data": data,
         "dedupe_key": dedupe_key},
    )
    user_ids = resolve_recipients(recipients, usernames=usernames)
    if not user_ids:
        return [], 0
    now = timezone.now()
    with transaction.atomic():
        lock_streams(user_ids)
        existing = {}
        if fields["dedupe_key"] is not None:
            existing = {
                n.recipient_id: n
                for n in Notification.objects.filter(recipient_id__in=user_ids, dedupe_key=fields["dedupe_key"])
            }
        prefs = prefs_for([pk for pk in user_ids if pk not in existing])
        new = [Notification(recipient_id=pk, created_at=now, muted=prefs[pk].is_muted(fields["kind"]), **fields)
               for pk in prefs]
        created = Notification.objects.bulk_create(new, batch_size=1000)
        if created:
            transaction.on_commit(partial(publish_entries, created))
    by_user = {n.recipient_id: n for n in created} | existing
    return [by_user[pk] for pk in user_ids], len(created)


def announce(*, title, body="", level="info", url="", audience=None, expires_at=None,
             strict: bool = True) -> Announcement:
    """Store one announcement and push it to its audience after commit.

    Args: see ``notify.api.announce``.
    Returns:
        The saved ``Announcement``; its ``id`` is its stream id.
    Raises:
        InvalidParameter: naming the bad field; nothing stored.
    """
    fields = validate(
        AnnouncementFields,
        {"title": title, "body": body, "level": level, "url": url, "expires_at": expires_at},
        strict=strict,
    )
    if audience is not None and not isinstance(audience, Group):
        raise InvalidParameter("audience", "must be a Group or None")
    if fields["expires_at"] is not None and fields["expires_at"] <= timezone.now():
        raise InvalidParameter("expires_at", "must be in the future")
    announcement = Announcement(audience_group=audience, **fields)
    with transaction.atomic():
        save_announcement(announcement)
    return announcement


def save_notification(notification: Notification) -> None:
    """Save a new notification under its recipient's stream lock and push it after
    commit (the admin's add form). Must run inside ``transaction.atomic()``."""
    lock_streams([notification.recipient_id])
    notification.muted = get_prefs(notification.recipient_id).is_muted(notification.kind)  # fixed when stored
    notification.save()
    transaction.on_commit(partial(publish_entries, [notification]))


def save_announcement(announcement: Announcement) -> None:
    """Save a new announcement under the all-streams lock and push it after commit.

    Must run inside ``transaction.atomic()`` (the admin's change form does).
    """
    lock_streams(None)
    announcement.kind = ANNOUNCEMENT_KIND
    announcement.save()
    transaction.on_commit(partial(publish_entries, [announcement]))


def mark_read(user, ids: list[int]) -> tuple[list[int], int]:
    """Mark those of ``ids`` that are in ``user``'s stream read.

    Ids that are not the user's, unknown or already read are ignored (no error).
    Returns:
        ``(newly read ids in increasing order, unread count after)``. When any id
        changed, every open connection of the user gets a ``read`` frame.
    """
    # Ids outside the id column's range (64-bit) name no item; the database would
    # reject them (SQLite: OverflowError, PostgreSQL: bigint out of range).
    ids = [pk for pk in ids if 0 < pk < 2**63]
    with transaction.atomic():
        newly = sorted(
            Entry.objects.stream_for(user).with_read(user)
            .filter(id__in=ids, is_read=False).values_list("id", flat=True)
        )
        Receipt.objects.bulk_create([Receipt(user=user, entry_id=pk) for pk in newly], ignore_conflicts=True)
    unread = unread_count(user)
    if newly:
        publish(read_message(user.pk, ids=newly, unread=unread))
    return newly, unread


def mark_all_read(user) -> tuple[int, int, bool]:
    """Mark every item of ``user``'s stream up to their cursor read (one write).

    Returns:
        ``(cursor, unread count after, whether anything changed)``; on a change,
        every open connection of the user gets ``read`` with ``all: true``.
    """
    latest, unread = stream_summary(user)
    if unread == 0:
        return latest, 0, False
    with transaction.atomic():
        state, _ = StreamState.objects.select_for_update().get_or_create(user=user)
        if state.read_through < latest:
            state.read_through = latest
            state.save(update_fields=["read_through"])
    unread = unread_count(user)
    publish(read_message(user.pk, cursor=latest, unread=unread))
    return latest, unread, True


def rate_limit_wait(group: str, key: str, rate: str) -> int | None:
    """Count one request of ``key`` in ``group`` against ``rate`` (django-ratelimit's
    fixed window in Django's cache, e.g. ``"600/m"``).

    Returns:
        Whole seconds to wait (at least 1) when over the rate, else None. A cache
        failure lets the request through (logged): the limit protects the service,
        it must not take it down.
    """
    try:
        usage = get_usage(None, group=group, key=lambda _group, _request: key, rate=rate, increment=True)
    except Exception:
        logger.warning("notify: rate limit cache unavailable; request allowed", exc_info=True,
                       extra=log_fields("rate_limit.cache_unavailable", group=group))
        return None
    if usage is not None and usage["should_limit"]:
        return max(1, int(usage["time_left"]))
    return None


def client_mark_read(user, ids: list[int] | None) -> int:
    """Mark ``ids`` read (or everything, for ``None``) for a client (WebSocket ``read``
    frames and ``POST notifications/read/``), within ``CLIENT_RATE_LIMIT`` per user.

    Returns:
        The user's unread count after.
    Raises:
        RateLimited: the user is over the rate; nothing was marked.
    """
    wait = rate_limit_wait("notify.client", str(user.pk), notify_settings.CLIENT_RATE_LIMIT)
    if wait is not None:
        raise RateLimited(wait)
    if ids is None:
        return mark_all_read(user)[1]
    return mark_read(user, ids)[1]


def authenticate_token(raw: str) -> ApiToken | None:
    """Return the live ``ApiToken`` for a raw token, with its user loaded, or None.

    Revoked tokens, and personal tokens of inactive users, give None.
    """
    if not raw or len(raw) > 200:
        return None
    token = ApiToken.objects.active().select_related("user").filter(digest=hash_token(raw)).first()
    if token is None or (token.user_id is not None and not token.user.is_active):
        return None
    return token


def revoke_token(raw: str) -> ApiToken | None:
    """Revoke a token or service key by its raw value and close what it opened.

    Returns:
        The revoked ``ApiToken``, or None when no live token has that value.
    """
    token = ApiToken.objects.active().filter(digest=hash_token(raw)).first()
    if token is not None:
        revoke(token)
    return token


def revoke(token: ApiToken) -> None:
    """Revoke ``token`` (a live ``ApiToken``) and close the connections it opened, in
    every process (``notify.revoke``; the hub's credentials check is the fallback)."""
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    publish(revoke_message(token.pk))


def parse_expires_at(value: Any) -> datetime | None:
    """Parse an ISO 8601 ``expires_at`` from JSON or a command line (None passes)."""
    if value is None or isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise InvalidParameter("expires_at", "must be an ISO 8601 string or null")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParameter("expires_at", "must be an ISO 8601 date and time") from None
    if parsed.tzinfo is None:
        raise InvalidParameter("expires_at", "must have a time zone")
    return parsed
