"""Admin pages: notifications, announcements (posting one pushes it live), API tokens."""

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.utils import timezone

from . import services
from .exceptions import InvalidParameter
from .hub import publish
from .locks import lock_streams
from .models import Announcement, ApiToken, Notification
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
    search_fields = ("title", "recipient__username")
    raw_id_fields = ("recipient",)
    date_hierarchy = "created_at"

    def save_model(self, request, obj, form, change):
        """Save; a new notification takes its stream lock and is pushed after commit."""
        if change:
            return super().save_model(request, obj, form, change)
        lock_streams([obj.recipient_id])
        super().save_model(request, obj, form, change)
        transaction.on_commit(lambda: services.push_entries([obj]))


@admin.register(Announcement)
class AnnouncementAdmin(admin.ModelAdmin):
    form = AnnouncementForm
    list_display = ("id", "title", "level", "audience_group", "created_at", "expires_at")
    list_filter = ("level", "audience_group")
    search_fields = ("title",)
    date_hierarchy = "created_at"

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
            token.revoked_at = timezone.now()
            token.save(update_fields=["revoked_at"])
            publish({"type": "notify.revoke", "token": token.pk})
            revoked += 1
        self.message_user(request, f"Revoked {revoked} token(s).")
