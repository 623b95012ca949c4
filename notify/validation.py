"""Validation of notification and announcement fields (docs/protocol.md §1, §5, §6).

One set of rules for the Python API, the HTTP send API and the management commands,
written as pydantic models. Every failure becomes ``InvalidParameter`` naming the field.
"""

import re
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .conf import notify_settings
from .exceptions import InvalidParameter
from .serializers import dumps

KIND_PATTERN = r"^[a-z0-9_.-]{1,64}$"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    title: str
    body: str = ""
    level: Literal["info", "success", "warning", "error"] = "info"
    url: str = ""

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

    @field_validator("data")
    @classmethod
    def _data(cls, value: dict | None) -> dict:
        if value is None:
            return {}
        try:
            size = len(dumps(value).encode())
        except (TypeError, ValueError) as exc:
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
        if value is not None and value.tzinfo is None:
            raise ValueError("must have a time zone")
        return value


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
        name = str(error["loc"][0]) if error["loc"] else "body"
        if error["type"] == "extra_forbidden":
            raise InvalidParameter(name, "is not a known field") from None
        raise InvalidParameter(name, error["msg"].removeprefix("Value error, ")) from None
