"""The audience rule (``notify.audience``) in its four forms gives the same streams."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.utils import timezone

from notify import audience
from notify.models import Announcement, Entry, Notification

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world(make_user):
    """Users in and out of a group, joined before and after, and every kind of entry."""
    staff = Group.objects.create(name="staff")
    early = make_user("early")
    early.groups.add(staff)
    outsider = make_user("outsider")
    now = timezone.now()
    entries = [
        Notification.objects.create(recipient=early, title="to early"),
        Notification.objects.create(recipient=outsider, title="to outsider"),
        Announcement.objects.create(title="to all"),
        Announcement.objects.create(title="to staff", audience_group=staff),
        Announcement.objects.create(title="expired", expires_at=now + timedelta(seconds=1)),
    ]
    Entry.objects.filter(title="expired").update(expires_at=now - timedelta(seconds=1))
    late = make_user("late")  # joined after every announcement
    late.groups.add(staff)
    Announcement.objects.create(title="to staff, later", audience_group=staff)
    return [early, outsider, late], list(Entry.objects.order_by("id"))


def by_sql(user, now):
    adapt = connection.ops.adapt_datetimefield_value
    table = Entry._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT e.id FROM {table} e WHERE {audience.stream_sql('e')} ORDER BY e.id",
            {"user": user.pk, "joined": adapt(user.date_joined), "now": adapt(now)},
        )
        return [row[0] for row in cursor.fetchall()]


def by_memory(user, entries, now):
    group_ids = frozenset(user.groups.values_list("id", flat=True))
    return [
        e.pk for e in entries
        if audience.sees(recipient=e.recipient_id, group=e.audience_group_id, created=e.created_at.timestamp(),
                         expires=e.expires_at.timestamp() if e.expires_at else None, user_id=user.pk,
                         group_ids=group_ids, joined=user.date_joined.timestamp(), now=now.timestamp())
    ]


def test_orm_sql_and_memory_forms_agree(world):
    users, entries = world
    now = timezone.now()
    streams = {}
    for user in users:
        orm = list(Entry.objects.filter(audience.stream_q(user, now)).order_by("id").values_list("id", flat=True))
        assert orm == by_sql(user, now) == by_memory(user, entries, now), user.username
        streams[user.username] = {Entry.objects.get(pk=pk).title for pk in orm}
    assert streams == {
        "early": {"to early", "to all", "to staff", "to staff, later"},
        "outsider": {"to outsider", "to all"},
        "late": {"to staff, later"},
    }


def test_the_admin_audience_is_the_users_whose_stream_holds_the_announcement(world):
    users, entries = world
    now = timezone.now()
    for entry in entries:
        if entry.recipient_id is not None or (entry.expires_at and entry.expires_at <= now):
            continue
        reached = set(audience.audience_users(entry.audience_group, entry.created_at).values_list("pk", flat=True))
        holding = {u.pk for u in users if Entry.objects.filter(audience.stream_q(u, now), pk=entry.pk).exists()}
        assert reached == holding, entry.title
