"""The inbox HTTP API and the service API under ``/notify/api/`` (CONTRACT §5).

Every answer is JSON, errors included (CONTRACT §2). Authentication: a Bearer token
when an ``Authorization`` header is present (judged by it alone, no CSRF), else the
session (CSRF-checked on POST). Personal tokens and sessions use the inbox endpoints;
service keys use ``send/`` and ``announce/`` only, rate-limited per key.
"""

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import Group
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from . import services
from .conf import notify_settings
from .exceptions import InvalidParameter
from .models import ApiToken
from .params import parse_int
from .selectors import inbox_page, unread_count

logger = logging.getLogger(__name__)

SEND_FIELDS = {"recipients", "title", "body", "kind", "level", "url", "data", "dedupe_key"}
ANNOUNCE_FIELDS = {"title", "body", "level", "url", "group", "expires_at"}


class ApiError(Exception):
    """An error answer of CONTRACT §2: HTTP ``status``, ``code`` and ``message``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JsonResponse:
    """Return ``{"error": {"code", "message"}}`` with ``status``."""
    response = JsonResponse({"error": {"code": code, "message": message}}, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    response["Cache-Control"] = "no-store"
    return response


class _CsrfCheck(CsrfViewMiddleware):
    """Django's CSRF check, answering a failure with the JSON error instead of the
    HTML page (as Django REST framework's ``CSRFCheck`` does)."""

    def _reject(self, request, reason):
        return error_response(403, "csrf_failed", f"CSRF verification failed: {reason}")


def _bearer(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, raw = header.partition(" ")
    return raw.strip() if scheme.lower() == "bearer" else ""


def _authenticate(request: HttpRequest, service: bool) -> ApiToken | None:
    """Check the caller may use an endpoint for users (``service=False``) or services.

    Returns:
        The ``ApiToken`` of a Bearer request, None for a session; sets ``request.user``.
    Raises:
        ApiError: 401 without valid credentials, 403 ``forbidden`` for the wrong kind
            of credential, 403 ``csrf_failed`` for a session POST, PUT or DELETE without
            CSRF token.
    """
    raw = _bearer(request)
    if raw is not None:
        token = services.authenticate_token(raw)
        if token is None:
            raise ApiError(401, "not_authenticated", "The Bearer token is not valid.",
                           {"WWW-Authenticate": 'Bearer realm="notify"'})
        if token.is_service != service:
            raise ApiError(403, "forbidden", "A service key may only use send/ and announce/."
                           if token.is_service else "This endpoint needs a service key.")
        if not service:
            request.user = token.user
        return token
    if not request.user.is_authenticated:
        raise ApiError(401, "not_authenticated", "Sign in, or send Authorization: Bearer <token>.",
                       {"WWW-Authenticate": 'Bearer realm="notify"'})
    if service:
        raise ApiError(403, "forbidden", "This endpoint needs a service key.")
    if request.method not in ("GET", "HEAD", "OPTIONS", "TRACE"):  # POST, PUT, DELETE
        check = _CsrfCheck(lambda req: None)
        check.process_request(request)
        rejected = check.process_view(request, None, (), {})
        if rejected is not None:
            raise ApiError(403, "csrf_failed", json.loads(rejected.content)["error"]["message"])
    return None


def _rate_limit(group: str, key: str, rate: str) -> None:
    """Raise 429 ``rate_limited`` with ``Retry-After`` when ``key`` is over ``rate``."""
    retry_after = services.rate_limit_wait(group, key, rate)
    if retry_after is not None:
        raise ApiError(429, "rate_limited", f"Too many requests; retry in {retry_after} s.",
                       {"Retry-After": str(retry_after)})


def _json_body(request: HttpRequest) -> dict[str, Any]:
    """Return the request body as a JSON object.

    Raises:
        ApiError: 413 over ``MAX_BODY_BYTES``; 400 ``invalid_parameter`` (``body``) for
            anything but a JSON object.
    """
    limit = notify_settings.MAX_BODY_BYTES
    too_large = ApiError(413, "payload_too_large", f"The request body is over {limit} bytes.")
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise too_large
    try:
        raw = request.body
    except Exception as exc:  # RequestDataTooBig past DATA_UPLOAD_MAX_MEMORY_SIZE
        raise too_large from exc
    if len(raw) > limit:
        raise too_large
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidParameter("body", "must be a JSON object") from None
    if not isinstance(value, dict):
        raise InvalidParameter("body", "must be a JSON object")
    return value


def _only(body: dict[str, Any], known: set[str]) -> None:
    for name in body:
        if name not in known:
            raise InvalidParameter(name, "is not a known field")


def api_view(method: str, *, service: bool = False) -> Callable:
    """Decorate a view of this API: method check (405), authentication, CSRF for
    sessions, rate limit for services, and every error as CONTRACT §2 JSON.

    The view is called as ``view(request, token)``.
    """

    def decorate(view):
        @csrf_exempt
        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            try:
                if request.method != method:
                    raise ApiError(405, "method_not_allowed", f"Method {request.method} is not allowed; use {method}.",
                                   {"Allow": method})
                token = _authenticate(request, service)
                if service:
                    _rate_limit("notify.service", str(token.pk), notify_settings.SERVICE_RATE_LIMIT)
                response = view(request, token, *args, **kwargs)
            except ApiError as exc:
                return error_response(exc.status, exc.code, exc.message, exc.headers)
            except InvalidParameter as exc:
                return error_response(400, exc.code, str(exc))
            except Exception:
                logger.exception("notify: %s %s failed", request.method, request.path)
                return error_response(500, "server_error", "The server failed; try again later.")
            response["Cache-Control"] = "no-store"
            return response

        return wrapped

    return decorate


def _flag(name: str, value: str | None) -> bool:
    if value is None:
        return False
    lowered = value.lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no", ""):
        return False
    raise InvalidParameter(name, "must be 1 or 0")


@api_view("GET")
def notifications(request, token):
    """``GET notifications/?unread=1&before=<id>&limit=<n>``: the user's items, newest
    first, as ``{"notifications": [...], "next_before": <id or null>}``.

    ``limit`` 1 to ``INBOX_MAX_LIMIT`` (default ``INBOX_LIMIT``); ``next_before`` is the
    last item's id when the page is full.
    """
    params = request.GET
    unread = _flag("unread", params.get("unread"))
    before = parse_int("before", params.get("before"), default=None, minimum=1)
    limit = parse_int("limit", params.get("limit"), default=notify_settings.INBOX_LIMIT, minimum=1,
                      maximum=notify_settings.INBOX_MAX_LIMIT)
    items = inbox_page(request.user, before=before, limit=limit, unread=unread)
    next_before = items[-1]["id"] if len(items) == limit else None
    return JsonResponse({"notifications": items, "next_before": next_before})


@api_view("GET")
def unread(request, token):
    """``GET notifications/unread-count/``: ``{"unread": <count>}``."""
    return JsonResponse({"unread": unread_count(request.user)})


@api_view("POST")
def mark_read(request, token):
    """``POST notifications/read/`` with ``{"ids": [...]}`` or ``{"all": true}``:
    answers ``{"unread": <count>}``; the user's open connections get ``read``.

    Ids that are not the user's are ignored; at most ``MAX_READ_IDS`` ids.
    """
    body = _json_body(request)
    _only(body, {"ids", "all"})
    _rate_limit("notify.client", str(request.user.pk), notify_settings.CLIENT_RATE_LIMIT)
    if "all" in body:
        if body["all"] is not True:
            raise InvalidParameter("all", "must be true")
        if "ids" in body:
            raise InvalidParameter("ids", "give either ids or all, not both")
        _, count, _ = services.mark_all_read(request.user)
        return JsonResponse({"unread": count})
    ids = body.get("ids")
    if not isinstance(ids, list) or not all(type(i) is int for i in ids):
        raise InvalidParameter("ids", "must be a list of integers")
    if len(ids) > notify_settings.MAX_READ_IDS:
        raise InvalidParameter("ids", f"at most {notify_settings.MAX_READ_IDS} ids")
    _, count = services.mark_read(request.user, ids)
    return JsonResponse({"unread": count})


@api_view("POST", service=True)
def send(request, token):
    """``POST send/`` (service key): store a notification per recipient (user id or
    username). ``201 {"ids": [...]}`` when anything was created, ``200`` when every one
    already existed under ``dedupe_key``; ``400 unknown_recipient`` stores nothing."""
    body = _json_body(request)
    _only(body, SEND_FIELDS)
    if "recipients" not in body:
        raise InvalidParameter("recipients", "is required")
    recipients = body.pop("recipients")
    if not isinstance(recipients, list) or not recipients:
        raise InvalidParameter("recipients", "must be a non-empty list of user ids or usernames")
    body.setdefault("title", None)
    created_list, created = services.send(recipients, usernames=True, **body)
    return JsonResponse({"ids": [n.pk for n in created_list]}, status=201 if created else 200)


@api_view("POST", service=True)
def announce(request, token):
    """``POST announce/`` (service key): store an announcement for every active user,
    or a group's members; ``201 {"id": <stream id>}``. Unknown ``group`` or bad
    ``expires_at``: ``400 invalid_parameter``."""
    body = _json_body(request)
    _only(body, ANNOUNCE_FIELDS)
    group_name = body.pop("group", None)
    audience = None
    if group_name is not None:
        if not isinstance(group_name, str):
            raise InvalidParameter("group", "must be a group name or null")
        audience = Group.objects.filter(name=group_name).first()
        if audience is None:
            raise InvalidParameter("group", f"no group named {group_name[:80]!r}")
    body["expires_at"] = services.parse_expires_at(body.get("expires_at"))
    body.setdefault("title", None)
    announcement = services.announce(audience=audience, **body)
    return JsonResponse({"id": announcement.pk}, status=201)


@csrf_exempt
def not_found(request, *args, **kwargs) -> HttpResponse:
    """Any other path under ``/notify/``: ``404 not_found`` as JSON."""
    return error_response(404, "not_found", f"No such endpoint: {request.path[:200]}")
