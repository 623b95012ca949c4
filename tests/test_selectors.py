"""The one backlog reader: the hand-written summary agrees with the ORM definition."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from notify import services
from notify.models import Announcement
from notify.selectors import read_stream, stream_summary, stream_summary_orm


@pytest.mark.django_db(transaction=True)
def test_fast_summary_agrees_with_the_orm_in_every_audience_case(make_user):
    staff = Group.objects.create(name="staff")
    alice, bob = make_user("alice"), make_user("bob")
    alice.groups.add(staff)
    services.send([alice, bob], title="personal to both")
    services.send(bob, title="only bob")
    services.announce(title="everyone")
    services.announce(title="staff only", audience=staff)
    expiring = services.announce(title="expires", expires_at=timezone.now() + timedelta(hours=1))
    Announcement.objects.filter(pk=expiring.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    late = make_user("late")  # joined after every announcement above
    services.announce(title="after late joined")
    for user in (alice, bob, late):
        assert stream_summary(user) == stream_summary_orm(user)
    assert stream_summary(alice) == (stream_summary(late)[0], 4)  # 1 personal + 3 announcements
    assert stream_summary(bob)[1] == 4  # 2 personal + 2 announcements (not staff, not expired)
    assert stream_summary(late)[1] == 1

    newly, unread = services.mark_read(alice, [stream_summary(alice)[0]])
    assert newly and unread == 3
    assert stream_summary(alice) == stream_summary_orm(alice)
    services.mark_all_read(bob)
    assert stream_summary(bob) == stream_summary_orm(bob) == (stream_summary(bob)[0], 0)


@pytest.mark.django_db(transaction=True)
def test_read_stream_returns_the_backlog_after_the_cursor_oldest_first(user):
    sent = [services.send(user, title=f"n{i}")[0][0] for i in range(5)]
    result = read_stream(user, cursor=sent[1].pk, limit=2, groups=True)
    assert [item["id"] for item in result.items] == [sent[2].pk, sent[3].pk]
    assert result.more is True
    assert result.latest == sent[-1].pk and result.unread == 5
    assert read_stream(user, cursor=None, limit=10).items == []
