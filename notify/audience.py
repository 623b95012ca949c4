"""Who sees an entry: the one definition of a user's stream (docs/protocol.md §1).

A personal notification is in its recipient's stream. An announcement is in the stream
of every user who joined before it was created (``created_at > date_joined``), narrowed
to the members of its ``audience_group`` when it has one, until ``expires_at``.

The rule is needed in four forms; they are all here, and ``tests/test_audience.py``
checks that they agree:

- ``stream_q``: an ORM filter over ``Entry`` (inbox, backlog, mark-read);
- ``stream_sql``: the same as a SQL condition (the one-statement handshake summary);
- ``sees``: in memory, for an entry pushed through the channel layer (the hub);
- ``audience_users``: the users an announcement reaches (the admin's counts).
"""

from datetime import datetime

from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet
from django.utils import timezone


def stream_q(user, now: datetime) -> Q:
    """Return the ``Q`` over ``Entry`` that selects ``user``'s stream at ``now``."""
    announcement = (
        Q(recipient__isnull=True, created_at__gt=user.date_joined)
        & (Q(audience_group__isnull=True) | Q(audience_group__in=user.groups.all()))
        & (Q(expires_at__isnull=True) | Q(expires_at__gt=now))
    )
    return Q(recipient=user.pk) | announcement


def stream_sql(alias: str = "e") -> str:
    """Return ``stream_q`` as a SQL condition on the entry table aliased ``alias``.

    Named parameters: ``user`` (pk), ``joined`` (``date_joined``) and ``now``, adapted
    for the connection; the membership table and columns come from the user model's
    ``groups`` field, so a custom user model works.
    """
    groups = get_user_model()._meta.get_field("groups")
    memberships = groups.m2m_db_table()
    member = groups.m2m_column_name()
    group = groups.m2m_reverse_name()
    return (
        f"({alias}.recipient_id = %(user)s OR ({alias}.recipient_id IS NULL"
        f" AND {alias}.created_at > %(joined)s"
        f" AND ({alias}.audience_group_id IS NULL OR {alias}.audience_group_id IN"
        f" (SELECT m.{group} FROM {memberships} m WHERE m.{member} = %(user)s))"
        f" AND ({alias}.expires_at IS NULL OR {alias}.expires_at > %(now)s)))"
    )


def sees(*, recipient: int | None, group: int | None, created: float, expires: float | None,
         user_id: int, group_ids: frozenset, joined: float, now: float) -> bool:
    """Whether a user sees an entry, from plain values.

    Args:
        recipient, group: the entry's recipient and audience group pks (or None).
        created, expires: the entry's ``created_at`` and ``expires_at`` as POSIX seconds.
        user_id, group_ids, joined: the user's pk, group pks and ``date_joined`` (POSIX
            seconds).
        now: POSIX seconds.
    """
    if recipient is not None:
        return recipient == user_id
    if created <= joined:
        return False
    if group is not None and group not in group_ids:
        return False
    return expires is None or expires > now


def audience_users(group=None, published: datetime | None = None) -> QuerySet:
    """Return the active users whose stream an announcement of ``group`` (None: every
    user) created at ``published`` (default: now) is in, until it expires."""
    users = get_user_model().objects.filter(is_active=True, date_joined__lt=published or timezone.now())
    return users.filter(groups=group) if group is not None else users
