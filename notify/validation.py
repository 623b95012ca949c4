"""Validation of notification and announcement fields (docs/protocol.md §1, §5, §6).

One set of rules for the Python API, the HTTP send API and the management commands,
written as pydantic models. Every failure becomes ``InvalidParameter`` naming the field.
"""

import re
from datetime import datetime, timezone
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .conf import notify_settings
from .exceptions import InvalidParameter
from .serializers import dumps

KIND_PATTERN = r"^[a-z0-9_.-]{1,64}$"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Text that cannot be stored: NUL (PostgreSQL text and jsonb refuse it) and lone
# surrogates (not encodable as UTF-8; JSON lets a "\ud800" escape through).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Deepest nesting of ``data``: deep enough for any real payload, shallow enough that
# encoding it (Python's json, PostgreSQL's jsonb) stays far from recursion limits.
MAX_DATA_DEPTH = 32


def check_text(field: str, value: Any, *, max_depth: int | None = None) -> None:
    """Check that every string in ``value`` (a str, or JSON-like nested dicts and lists,
    keys included) can be stored: no NUL, no lone surrogate.

    Walks iteratively, so any depth is safe to check.

    Args:
        field: the name given in the error.
        value: a str, or a dict/list structure (other leaves pass).
        max_depth: deepest allowed nesting of dicts and lists (None: no limit).
    Raises:
        InvalidParameter: naming ``field``.
    """
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                raise InvalidParameter(field, "must not contain NUL characters or lone surrogates")
        elif isinstance(item, (dict, list)):
            if max_depth is not None and depth >= max_depth:
                raise InvalidParameter(field, f"must not be nested deeper than {max_depth} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    title: str
    body: str = ""
    level: Literal["info", "success", "warning", "error"] = "info"
    url: str = ""

    @field_validator("title", "body", "url")
    @classmethod
    def _storable(cls, value: str, info) -> str:
        check_text(info.field_name, value)
        return value

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        if len(value) > notify_settings.MAX_TITLE_LENGTH:
            raise ValueError(f"at most {notify_settings.MAX_TITLE_LENGTH} characters")
        return value

    @field_validator("body")
    @classmethod
    def _body(cls, value: str) -> str:
        if len(value) > notify_settings.MAX_BODY_LENGTH:
            raise ValueError(f"at most {notify_settings.MAX_BODY_LENGTH} characters")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        # Only http(s) or relative links: a javascript: URL would run in the inbox page.
        if len(value) > 2000 or _CONTROL.search(value) or " " in value:
            raise ValueError("must be a link without spaces, at most 2000 characters")
        scheme = urlsplit(value).scheme
        if scheme and scheme not in ("http", "https"):
            raise ValueError("must be relative, http or https")
        return value


class NotificationFields(_Common):
    """The fields of a personal notification."""

    kind: str = Field(default="message", pattern=KIND_PATTERN)
    data: dict[str, Any] | None = None
    dedupe_key: str | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("dedupe_key")
    @classmethod
    def _dedupe_key(cls, value: str | None) -> str | None:
        check_text("dedupe_key", value)
        return value

    @field_validator("data")
    @classmethod
    def _data(cls, value: dict | None) -> dict:
        if value is None:
            return {}
        check_text("data", value, max_depth=MAX_DATA_DEPTH)
        try:
            size = len(dumps(value).encode())
        except (TypeError, ValueError, RecursionError) as exc:
            raise ValueError("must be JSON-serializable") from exc
        if size > notify_settings.MAX_DATA_BYTES:
            raise ValueError(f"at most {notify_settings.MAX_DATA_BYTES} bytes as JSON")
        return value


class AnnouncementFields(_Common):
    """The fields of an announcement (the audience is checked by the caller)."""

    expires_at: datetime | None = None

    @field_validator("expires_at")
    @classmethod
    def _expires_at(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("must have a time zone")
        try:
            # Stored in UTC: 9999-12-31T23:59:59-23:59 has no UTC value.
            return value.astimezone(timezone.utc)
        except OverflowError:
            raise ValueError("is out of range once converted to UTC") from None


def validate(model: type[BaseModel], values: dict[str, Any], *, strict: bool = True) -> dict[str, Any]:
    """Validate ``values`` against ``model``; return the cleaned values as a dict.

    Args:
        model: ``NotificationFields`` or ``AnnouncementFields``.
        values: the raw fields.
        strict: ``False`` allows conversions (ISO 8601 strings for datetimes), as
            JSON bodies need.
    Raises:
        InvalidParameter: naming the first bad field.
    """
    try:
        return model.model_validate(values, strict=strict).model_dump()
    except ValidationError as exc:
        error = exc.errors()[0]
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, InvalidParameter):  # raised by a helper that names the field
            raise cause from None
        name = str(error["loc"][0]) if error["loc"] else "body"
        if error["type"] == "extra_forbidden":
            raise InvalidParameter(name, "is not a known field") from None
        raise InvalidParameter(name, error["msg"].removeprefix("Value error, ")) from None
