"""Parsing of query parameters shared by the WebSocket, long-poll and SSE endpoints."""

import re
from urllib.parse import parse_qs

from .exceptions import InvalidParameter

_DIGITS = re.compile(r"[0-9]{1,18}")


def query_params(scope) -> dict[str, str]:
    """Return an ASGI scope's query string as ``{name: last value}``.

    Raises:
        InvalidParameter: the query string is not valid UTF-8.
    """
    try:
        raw = scope.get("query_string", b"").decode()
    except UnicodeDecodeError:
        raise InvalidParameter("query", "is not valid UTF-8") from None
    return {name: values[-1] for name, values in parse_qs(raw, keep_blank_values=True).items()}


def parse_int(name: str, value: str | None, *, default: int | None, minimum: int = 0,
              maximum: int | None = None) -> int | None:
    """Parse a non-negative decimal integer parameter; not clamped.

    Args:
        name: the parameter's name, for the error message.
        value: the raw string, or None when absent (then ``default`` is returned).
        minimum, maximum: inclusive bounds (``maximum=None``: no upper bound).
    Raises:
        InvalidParameter: not plain digits, or out of range.
    """
    if value is None:
        return default
    if not _DIGITS.fullmatch(value):
        raise InvalidParameter(name, "must be a non-negative integer")
    number = int(value)
    if number < minimum or (maximum is not None and number > maximum):
        bound = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
        raise InvalidParameter(name, f"must be {bound}")
    return number
