"""Admin pages: notifications, announcements (posting one pushes it live), API tokens."""

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import Count
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from . import services
from .exceptions import InvalidParameter
from .audience import audience_users
from .models import Announcement, ApiToken, DeviceReceipt, Notification, Receipt, StreamState
from .validation import AnnouncementFields, NotificationFields, validate


class _ValidatedForm(forms.ModelForm):
    """Run the same field rules as ``notify.api`` and show errors on the fields."""

    rules = None
    rule_fields = ()

    def clean(self):
        cleaned = super().clean()
        values = {name: cleaned.get(name) for name in self.rule_fields if name in cleaned}
        values = {k: v for k, v in values.items() if v is not None or k in ("data", "dedupe_key")}
        if values.get("dedupe_key") == "":
            values["dedupe_key"] = None
        try:
            validate(self.rules, values)
        except InvalidParameter as exc:
            self.add_error(exc.field if exc.field in self.fields else None, exc.problem)
        return cleaned


class NotificationForm(_ValidatedForm):
    rules = NotificationFields
    rule_fields = ("title", "body", "kind", "level", "url", "data", "dedupe_key")

    class Meta:
        model = Notification
        fields = ["recipient", "kind", "title", "body", "level", "url", "data", "dedupe_key"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["recipient"].required = True


class AnnouncementForm(_ValidatedForm):
    rules = AnnouncementFields
    rule_fields = ("title", "body", "level", "url", "expires_at")

    class Meta:
        model = Announcement
        fields = ["title", "body", "level", "url", "audience_group", "expires_at"]

    def clean_expires_at(self):
        value = self.cleaned_data.get("expires_at")
        if value is not None and value <= timezone.now() and not self.instance.pk:
            raise forms.ValidationError("Must be in the future.")
        return value


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    form = NotificationForm
    list_display = ("id", "recipient", "kind", "title", "level", "created_at")
    list_filter = ("level", "kind")
    raw_id_fields = ("recipient",)
    date_hierarchy = "created_at"

    def get_search_fields(self, request):
        """Search titles and recipients by the user model's ``USERNAME_FIELD``."""
        return ("title", f"recipient__{get_user_model().USERNAME_FIELD}")

    def get_urls(self):
        return [
            path("send-test/", self.admin_site.admin_view(self.send_test_view), name="notify_send_test"),
            *super().get_urls(),
        ]

    def send_test_view(self, request):
        """POST: send the signed-in staff user a test notification (a button on the list)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        notifications, _ = services.send(
            request.user, title="Test notification",
            body="If you can read this live, notify works for you.", kind="notify.test",
        )
        self.message_user(request, f"Sent test notification #{notifications[0].pk} to you.")
        return HttpResponseRedirect(reverse("admin:notify_notification_changelist"))

    def save_model(self, request, obj, form, change):
        """Save; a new notification takes its stream lock and is pushed after commit."""
        if change:
            return super().save_model(request, obj, form, change)
        services.save_notification(obj)


@admin.register(Announcement)
class AnnouncementAdmin(admin.ModelAdmin):
    form = AnnouncementForm
    list_display = ("id", "title", "level", "audience", "audience_size", "delivered_to", "read_by", "created_at",
                    "expires_at")
    list_filter = ("level", "audience_group")
    search_fields = ("title",)
    date_hierarchy = "created_at"
    readonly_fields = ("audience_summary", "receipts_summary", "preview")
    fieldsets = [
        (None, {"fields": ["title", "body", "level", "url"]}),
        ("Audience", {"fields": ["audience_group", "expires_at", "audience_summary", "receipts_summary"]}),
        ("Preview", {"fields": ["preview"]}),
    ]

    class Media:
        js = ["notify/admin_preview.js"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("audience_group").annotate(
            receipt_count=Count("receipts", distinct=True)
        )

    @admin.display(description="audience")
    def audience(self, obj):
        return obj.audience_group.name if obj.audience_group_id else "everyone"

    @admin.display(description="audience size")
    def audience_size(self, obj):
        return audience_users(obj.audience_group, obj.created_at).count()

    @admin.display(description="read by")
    def read_by(self, obj):
        """Audience members who read it: receipts, plus read-all watermarks past it."""
        by_watermark = (
            audience_users(obj.audience_group, obj.created_at)
            .filter(pk__in=StreamState.objects.filter(read_through__gte=obj.pk).values("user"))
            .exclude(pk__in=Receipt.objects.filter(entry=obj).values("user"))
            .count()
        )
        return obj.receipt_count + by_watermark

    @admin.display(description="delivered to")
    def delivered_to(self, obj):
        """Audience members one of whose devices acknowledged it (notify.receipts)."""
        return (
            audience_users(obj.audience_group, obj.created_at)
            .filter(pk__in=DeviceReceipt.objects.filter(delivered_through__gte=obj.pk).values("user"))
            .count()
        )

    @admin.display(description="delivered and read")
    def receipts_summary(self, obj):
        if obj is None or not obj.pk:
            return "-"
        delivered, read, size = self.delivered_to(obj), self.read_by(obj), self.audience_size(obj)
        return format_html(
            '<span data-delivered="{}" data-read="{}" data-audience="{}">delivered to {} and read by {} of {} user(s)</span>',
            delivered, read, size, delivered, read, size,
        )

    @admin.display(description="audience and size")
    def audience_summary(self, obj):
        if obj is not None and obj.pk:
            return f"{self.audience(obj)}: {self.audience_size(obj)} user(s)"
        sizes = [("everyone (no group)", audience_users().count())] + [
            (group.name, audience_users(group).count()) for group in Group.objects.order_by("name")[:50]
        ]
        return format_html_join(
            "", '<div data-audience-size="{}">{}: {} user(s)</div>',
            ((size, name, size) for name, size in sizes),
        )

    @admin.display(description="preview")
    def preview(self, obj):
        level = obj.level if obj is not None and obj.pk else "info"
        title = obj.title if obj is not None and obj.pk else ""
        body = obj.body if obj is not None and obj.pk else ""
        return format_html(
            '<div id="notify-preview" class="notify-preview" data-level="{}" '
            'style="border-left:4px solid #3b82f6;padding:8px 12px;background:#f8fafc;max-width:420px">'
            '<strong class="notify-preview-title">{}</strong>'
            '<div class="notify-preview-body" style="white-space:pre-wrap">{}</div></div>',
            level, title or "(title)", body,
        )

    def save_model(self, request, obj, form, change):
        """Save; a new announcement is pushed live to its audience after commit."""
        if change:
            return super().save_model(request, obj, form, change)
        services.save_announcement(obj)


class ApiTokenForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ["kind", "user", "name"]

    def clean(self):
        cleaned = super().clean()
        service = cleaned.get("kind") == ApiToken.SERVICE
        if service and cleaned.get("user"):
            self.add_error("user", "A service key belongs to no user.")
        if not service and not cleaned.get("user"):
            self.add_error("user", "A personal token needs a user.")
        return cleaned


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    form = ApiTokenForm
    list_display = ("hint", "kind", "user", "name", "created_at", "revoked_at")
    list_filter = ("kind",)
    raw_id_fields = ("user",)
    readonly_fields = ("hint", "created_at", "revoked_at")
    actions = ["revoke"]

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields + (("kind", "user") if obj else ())

    def save_model(self, request, obj, form, change):
        """A new token is issued here: its raw value is shown once, only its hash kept."""
        if change:
            return super().save_model(request, obj, form, change)
        raw = obj.set_new_secret()
        super().save_model(request, obj, form, change)
        messages.warning(request, f"Copy the new token now, it is not shown again: {raw}")

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        revoked = 0
        for token in queryset.filter(revoked_at__isnull=True):
            services.revoke(token)
            revoked += 1
        self.message_user(request, f"Revoked {revoked} token(s).")
