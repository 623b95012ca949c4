"""Stored notifications, announcements, read state and API tokens."""

import hashlib
import secrets
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Exists, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from .audience import stream_q

LEVELS = ("info", "success", "warning", "error")
ANNOUNCEMENT_KIND = "announcement"


class EntryQuerySet(models.QuerySet):
    def stream_for(self, user, *, now: datetime | None = None):
        """Return the entries in ``user``'s stream, as docs/protocol.md §1 defines it.

        Personal notifications addressed to the user, plus announcements published
        after the user joined whose group (if any) has the user as a member and
        that have not expired at ``now`` (default: the current time).
        """
        return self.filter(stream_q(user, now or timezone.now()))

    def with_read(self, user):
        """Annotate ``is_read`` (bool) for ``user``: at or below the user's
        ``read_through`` watermark, or with a ``Receipt`` of their own."""
        watermark = Coalesce(
            Subquery(StreamState.objects.filter(user=user.pk).values("read_through")[:1]),
            Value(0),
        )
        receipt = Receipt.objects.filter(user=user.pk, entry=OuterRef("pk"))
        return self.annotate(
            is_read=models.ExpressionWrapper(
                Q(id__lte=watermark) | Exists(receipt), output_field=models.BooleanField()
            )
        )

    def unread_for(self, user):
        """Return ``user``'s unread stream entries."""
        return self.stream_for(user).with_read(user).filter(is_read=False)


class Entry(models.Model):
    """One item of users' streams: a personal notification or an announcement.

    Both kinds share this table so that they share one id sequence: the ``id`` is the
    stream cursor of docs/protocol.md §1. A personal notification has a ``recipient``; an
    announcement has none and reaches its audience (every active user who joined
    before ``created_at``, narrowed to ``audience_group`` members when set, until
    ``expires_at``) by one row, whatever the audience size.

    Ordering guarantee (why ``since=<id>`` never skips a row that commits late):
    ids are allocated at INSERT, but a transaction can commit after a later one. Every
    write of an entry first takes, in its transaction, a lock on the streams it touches
    (``notify.locks.lock_streams``): on PostgreSQL a transaction-scoped advisory lock
    per recipient plus a shared lock on "all streams", and for an announcement the
    exclusive lock on "all streams". The id is allocated only after the lock is held,
    and the lock is released at commit, so within any one user's stream ids become
    visible in increasing order: a reader that saw id N will never later find an
    uncommitted id < N appear in that stream. SQLite allows one writer at a time
    (IMMEDIATE transactions), which gives the same order.
    """

    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="notify_entries",
        help_text="The user of a personal notification; empty for an announcement.",
    )
    audience_group = models.ForeignKey(
        Group,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name="audience group",
        help_text="Announcements only: limit the audience to this group's members.",
    )
    kind = models.CharField(max_length=64, default="message")
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True, default="")
    level = models.CharField(
        max_length=10, choices=[(level, level) for level in LEVELS], default="info"
    )
    url = models.CharField(max_length=2000, blank=True, default="")
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Announcements only: stop delivering after this time."
    )
    dedupe_key = models.CharField(max_length=200, null=True, blank=True)
    muted = models.BooleanField(
        default=False, help_text="The recipient muted this kind when it was stored (no toast, no push)."
    )

    objects = EntryQuerySet.as_manager()

    class Meta:
        verbose_name = "stream entry"
        verbose_name_plural = "stream entries"
        indexes = [
            models.Index(fields=["recipient", "id"], name="notify_entry_recipient_id"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["recipient", "dedupe_key"],
                condition=Q(dedupe_key__isnull=False),
                name="notify_entry_unique_dedupe",
            )
        ]

    def __str__(self):
        return f"#{self.pk} {self.title}"

    @property
    def is_announcement(self) -> bool:
        return self.recipient_id is None


class NotificationManager(models.Manager.from_queryset(EntryQuerySet)):
    def get_queryset(self):
        return super().get_queryset().filter(recipient__isnull=False)


class AnnouncementManager(models.Manager.from_queryset(EntryQuerySet)):
    def get_queryset(self):
        return super().get_queryset().filter(recipient__isnull=True)


class Notification(Entry):
    """A personal notification: an ``Entry`` with a ``recipient``."""

    objects = NotificationManager()

    class Meta:
        proxy = True


class Announcement(Entry):
    """An announcement: an ``Entry`` without a recipient, kind ``"announcement"``."""

    objects = AnnouncementManager()

    class Meta:
        proxy = True

    def save(self, *args, **kwargs):
        self.kind = ANNOUNCEMENT_KIND
        self.recipient = None
        super().save(*args, **kwargs)


class StreamState(models.Model):
    """Per-user read watermark: every entry with ``id <= read_through`` is read.

    ``read_all`` moves the watermark to the user's cursor: one write however many
    items and announcements are unread.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    read_through = models.BigIntegerField(default=0)


class Receipt(models.Model):
    """One user has read one entry (above their watermark)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    entry = models.ForeignKey(Entry, on_delete=models.CASCADE, related_name="receipts")
    read_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "entry"], name="notify_receipt_unique")
        ]


def hash_token(raw: str) -> str:
    """Return the SHA-256 hex digest stored for a raw token (tokens are random, 256-bit)."""
    return hashlib.sha256(raw.encode()).hexdigest()


def token_hint(raw: str) -> str:
    """Return what may be shown of a raw token: its prefix and last 4 characters
    (``ntk_…4242``), as Stripe shows its keys; never more of the secret."""
    return f"{raw[:4]}…{raw[-4:]}"


class ApiTokenQuerySet(models.QuerySet):
    def issue(self, *, user=None, name: str = "", service: bool = False) -> str:
        """Create a token and return its raw value; only its hash is stored.

        Args:
            user: the owner of a personal token; ``None`` for a service key.
            name: a label (a service key's service name).
            service: ``True`` for a service key (good for send/ and announce/ only).
        Returns:
            The raw token string, shown once.
        Raises:
            ValueError: a personal token without a user, or a service key with one.
        """
        if service == (user is not None):
            raise ValueError("user: a personal token needs a user, a service key none")
        token = ApiToken(user=user, name=name, kind=ApiToken.SERVICE if service else ApiToken.PERSONAL)
        raw = token.set_new_secret()
        token.save(force_insert=True, using=self.db)
        return raw

    def active(self):
        return self.filter(revoked_at__isnull=True)


class ApiToken(models.Model):
    """A personal API token (Bearer auth as a user) or a service key (send/announce).

    Stored hashed (SHA-256): the raw value is shown once, at creation.
    """

    PERSONAL = "personal"
    SERVICE = "service"

    kind = models.CharField(
        max_length=10, choices=[(PERSONAL, "personal token"), (SERVICE, "service key")]
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="notify_tokens",
    )
    name = models.CharField(max_length=100, blank=True, default="")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    hint = models.CharField(
        max_length=12, editable=False,
        help_text="The token's prefix and last 4 characters (ntk_…4242), to tell tokens apart.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        verbose_name = "API token"

    def __str__(self):
        owner = self.user if self.user_id else self.name
        return f"{self.get_kind_display()} {self.hint} ({owner})"

    @property
    def is_service(self) -> bool:
        return self.kind == self.SERVICE

    def set_new_secret(self) -> str:
        """Draw a new random 256-bit secret, store its hash, and return the raw token
        (``nsk_...`` for a service key, ``ntk_...`` for a personal token)."""
        raw = ("nsk_" if self.is_service else "ntk_") + secrets.token_urlsafe(32)
        self.digest = hash_token(raw)
        self.hint = token_hint(raw)
        return raw


class DeviceReceipt(models.Model):
    """Delivery receipt: one device of a user has shown every item of the user's
    stream with ``id <= delivered_through``.

    A device is a connection's client id (the JS client's id kept in localStorage), or
    its token. One row per (user, device), moved forward by an upsert per ack batch,
    never one row per item.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    device = models.CharField(max_length=80)
    delivered_through = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "device"], name="notify_devicereceipt_unique")
        ]


class PushSubscription(models.Model):
    """A browser's Web Push subscription (``PushSubscription.toJSON()``) for a user.

    ``pushed_through``: the escalation job has dealt with every item up to this id for
    this subscription (set to the newest id when subscribing, moved after each push the
    push service answered), so a restarted job sends nothing twice.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    endpoint = models.URLField(max_length=2000, unique=True)
    p256dh = models.CharField(max_length=100)
    auth = models.CharField(max_length=40)
    pushed_through = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "push subscription"


class Preference(models.Model):
    """A user's notification preferences: shell-style ``kind`` patterns."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    muted = models.JSONField(default=list, help_text="Kinds stored and listed, but no toast and no push.")
    no_push = models.JSONField(default=list, help_text="Kinds delivered live but never escalated to Web Push.")


class EscalationState(models.Model):
    """The escalation job's progress (one row, pk 1): every item with
    ``id <= horizon`` has been dealt with for every subscription."""

    horizon = models.BigIntegerField(default=0)
