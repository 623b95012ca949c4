"""The JSON error body of every HTTP answer under notify's prefix (docs: docs/protocol.md §2).

``{"error": {"code": "<snake_case>", "message": "<for a person>"}}`` with
``Cache-Control: no-store``. Codes: ``invalid_parameter`` and ``unknown_recipient`` (400),
``not_authenticated`` (401), ``forbidden`` and ``csrf_failed`` (403), ``not_found``
(404), ``method_not_allowed`` (405), ``payload_too_large`` (413), ``rate_limited``
(429, with ``Retry-After`` in whole seconds).
"""

from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt

from ..serializers import dumps


class ApiError(Exception):
    """An error answer: HTTP ``status``, ``code``, ``message`` and extra ``headers``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_body(code: str, message: str) -> bytes:
    """Return the error body as UTF-8 JSON bytes (for the ASGI consumers)."""
    return dumps({"error": {"code": code, "message": message}}).encode()


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> HttpResponse:
    """Return ``{"error": {"code", "message"}}`` with ``status`` and ``headers``."""
    response = HttpResponse(error_body(code, message), status=status, content_type="application/json")
    for name, value in (headers or {}).items():
        response[name] = value
    response["Cache-Control"] = "no-store"
    return response


@csrf_exempt
def not_found(request, *args, **kwargs) -> HttpResponse:
    """Any other path under notify's prefix: ``404 not_found`` as JSON."""
    return error_response(404, "not_found", f"No such endpoint: {request.path[:200]}")
