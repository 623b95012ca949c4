"""The inbox HTTP API and the service API (docs/protocol.md §5) on django-ninja, with its
OpenAPI 3 document at ``api/openapi.json``.

Every answer is JSON, errors included (``notify.http.errors``). Authentication: a Bearer
token when an ``Authorization`` header is present (judged by it alone, no CSRF), else
the session (CSRF-checked on POST, with Django's own check). Personal tokens and
sessions use the inbox operations; service keys use ``send/`` and ``announce/`` only,
rate-limited per key.
"""

import json
import logging
from datetime import datetime
from typing import Any, Literal

from django.contrib.auth.models import Group
from django.http import Http404, HttpRequest, HttpResponseBase
from django.urls import reverse
from django.middleware.csrf import CsrfViewMiddleware
from ninja import Field, NinjaAPI, Query, Schema, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser
from ninja.security import APIKeyCookie, HttpBearer
from pydantic import ConfigDict

from .. import preferences, receipts, services, webpush
from ..auth import bearer_token
from ..conf import notify_settings
from ..exceptions import InvalidParameter, RateLimited
from ..logging import log_fields
from ..models import ApiToken
from ..selectors import inbox_page, unread_count
from ..validation import check_text
from .errors import ApiError, error_response

logger = logging.getLogger(__name__)

MAX_ID = 2**63 - 1  # the id column is a signed 64-bit integer


# Authentication


class _CsrfCheck(CsrfViewMiddleware):
    """Django's CSRF check, answering a failure with the JSON error instead of the
    HTML page (as Django REST framework's ``CSRFCheck`` does)."""

    def _reject(self, request, reason):
        raise ApiError(403, "csrf_failed", f"CSRF verification failed: {reason}")


def _authenticate(request: HttpRequest, service: bool) -> ApiToken | None:
    """Check the caller may use an operation for users (``service=False``) or services.

    Returns:
        The ``ApiToken`` of a Bearer request, None for a session; sets ``request.user``.
    Raises:
        ApiError: 401 without valid credentials, 403 ``forbidden`` for the wrong kind
            of credential, 403 ``csrf_failed`` for a session POST without CSRF token,
            429 for a service key over ``SERVICE_RATE_LIMIT``.
    """
    raw = bearer_token(request.headers.get("Authorization"))
    if raw is not None:
        token = services.authenticate_token(raw)
        if token is None:
            raise ApiError(401, "not_authenticated", "The Bearer token is not valid.",
                           {"WWW-Authenticate": 'Bearer realm="notify"'})
        if token.is_service != service:
            raise ApiError(403, "forbidden", "A service key may only use send/ and announce/."
                           if token.is_service else "This endpoint needs a service key.")
        if service:
            _rate_limit("notify.service", str(token.pk), notify_settings.SERVICE_RATE_LIMIT)
        else:
            request.user = token.user
        return token
    if not request.user.is_authenticated:
        raise ApiError(401, "not_authenticated", "Sign in, or send Authorization: Bearer <token>.",
                       {"WWW-Authenticate": 'Bearer realm="notify"'})
    if service:
        raise ApiError(403, "forbidden", "This endpoint needs a service key.")
    if request.method not in ("GET", "HEAD", "OPTIONS", "TRACE"):
        check = _CsrfCheck(lambda req: None)
        check.process_request(request)
        check.process_view(request, None, (), {})
    return None


class PersonalAuth(HttpBearer):
    """A personal token as Bearer, or else the session (see ``_authenticate``)."""

    def __call__(self, request):
        return _authenticate(request, service=False) or request.user

    def authenticate(self, request, token):  # pragma: no cover - __call__ decides
        return None


class SessionCookie(APIKeyCookie):
    """Documents the session cookie in OpenAPI; ``PersonalAuth`` already decided."""

    param_name = "sessionid"

    def authenticate(self, request, key):  # pragma: no cover - never reached
        return None


class ServiceKeyAuth(HttpBearer):
    """A service key as Bearer token, rate-limited per key."""

    def __call__(self, request):
        return _authenticate(request, service=True)

    def authenticate(self, request, token):  # pragma: no cover - __call__ decides
        return None


def _rate_limit(group: str, key: str, rate: str) -> None:
    """Raise ``RateLimited`` when ``key`` is over ``rate``."""
    retry_after = services.rate_limit_wait(group, key, rate)
    if retry_after is not None:
        raise RateLimited(retry_after)


# Bodies


def check_body_size(request: HttpRequest) -> None:
    """Refuse a body over ``MAX_BODY_BYTES``: by its ``Content-Length`` before reading
    it, or by its length once read.

    Raises:
        ApiError: 413 ``payload_too_large``.
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


class JsonBody(Parser):
    """A JSON object body in UTF-8. Anything else parses to a value that fails every
    body schema, so the answer is ``400 invalid_parameter`` naming ``body`` (ninja would
    answer a parser exception with its own message)."""

    NOT_AN_OBJECT = ("not a JSON object",)

    def parse_body(self, request: HttpRequest) -> Any:
        try:
            # JSON is UTF-8 (RFC 8259 §8.1): no BOM, no UTF-16 or UTF-32 guessing.
            value = json.loads(request.body.decode("utf-8"))
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            return self.NOT_AN_OBJECT
        return value if isinstance(value, dict) else self.NOT_AN_OBJECT


class _Strict(Schema):
    model_config = ConfigDict(extra="forbid", strict=True)


Level = Literal["info", "success", "warning", "error"]


class Notification(Schema):
    """The notification object (docs/protocol.md §1)."""

    id: int
    kind: str
    title: str
    body: str
    level: Level
    url: str
    data: dict[str, Any]
    created_at: str = Field(description="ISO 8601, UTC, microseconds, Z suffix")
    read: bool
    muted: bool = Field(description="the recipient had muted this kind when it was stored (§10)")


class InboxItem(Notification):
    delivered: bool = Field(description="a device of the user acknowledged an id >= this one (§10)")


class InboxPage(Schema):
    notifications: list[InboxItem]
    next_before: int | None = Field(description="the last item's id when the page is full, else null")


class UnreadCount(Schema):
    unread: int


class ReadIn(_Strict):
    """Either ``ids`` (at most ``MAX_READ_IDS``) or ``all: true``."""

    ids: list[int] | None = None
    all: bool | None = Field(default=None, description="must be true when given")


class SendIn(_Strict):
    """A send; field rules as in ``notify.api.send``."""

    recipients: list[int | str] = Field(min_length=1, description="user ids or usernames")
    title: str
    body: str = ""
    kind: str = "message"
    level: Level = "info"
    url: str = ""
    data: dict[str, Any] | None = None
    dedupe_key: str | None = None


class SendOut(Schema):
    ids: list[int]


class AnnounceIn(_Strict):
    """An announcement; ``group`` names the audience group (null: every active user)."""

    title: str
    body: str = ""
    level: Level = "info"
    url: str = ""
    group: str | None = None
    expires_at: str | None = Field(default=None, description="ISO 8601 with a time zone")


class AnnounceOut(Schema):
    id: int


class ErrorDetail(Schema):
    code: str
    message: str


class Error(Schema):
    """The error body of every failure."""

    error: ErrorDetail


_AUTH_ERRORS = {400: Error, 401: Error, 403: Error, 405: Error, 413: Error, 429: Error}

class NotifyAPI(NinjaAPI):
    """A ``NinjaAPI`` whose URLs live in ``notify.urls``' namespace (no namespace of its
    own), wherever a host mounts it."""

    def get_root_path(self, path_params: dict[str, Any]) -> str:
        return reverse("notify:openapi-json").removesuffix("openapi.json")


api = NotifyAPI(
    title="notify",
    version="1",
    description="Inbox and send APIs of notify. Errors are always the JSON error body.",
    urls_namespace="notify-api",
    docs_url=None,
    parser=JsonBody(),
)
PERSONAL = [PersonalAuth(), SessionCookie()]


@api.get("notifications/", auth=PERSONAL, response={200: InboxPage, **_AUTH_ERRORS}, url_name="api-notifications")
def notifications(request, unread: Literal["1", "0", "true", "false", "yes", "no", ""] | None = None,
                  before: int | None = Query(None, ge=1, le=MAX_ID),
                  limit: int | None = Query(None, ge=1, le=200)):
    """The user's items, newest first; ``next_before`` pages further back."""
    limit = limit or notify_settings.INBOX_LIMIT
    if limit > notify_settings.INBOX_MAX_LIMIT:
        raise InvalidParameter("limit", f"must be from 1 to {notify_settings.INBOX_MAX_LIMIT}")
    items = inbox_page(request.user, before=before, limit=limit, unread=unread in ("1", "true", "yes"))
    return {"notifications": items, "next_before": items[-1]["id"] if len(items) == limit else None}


@api.get("notifications/unread-count/", auth=PERSONAL, response={200: UnreadCount, **_AUTH_ERRORS},
         url_name="api-unread-count")
def unread(request):
    """``{"unread": <count>}``."""
    return {"unread": unread_count(request.user)}


@api.post("notifications/read/", auth=PERSONAL, response={200: UnreadCount, **_AUTH_ERRORS}, url_name="api-read")
def mark_read(request, payload: ReadIn):
    """Mark ``ids`` (the user's own; others are ignored) or ``all`` read; the user's open
    connections get a ``read`` frame."""
    if "all" in payload.model_fields_set:
        if payload.all is not True:
            raise InvalidParameter("all", "must be true")
        if payload.ids is not None:
            raise InvalidParameter("ids", "give either ids or all, not both")
    elif payload.ids is None:
        raise InvalidParameter("ids", "must be a list of integers")
    elif len(payload.ids) > notify_settings.MAX_READ_IDS:
        raise InvalidParameter("ids", f"at most {notify_settings.MAX_READ_IDS} ids")
    return {"unread": services.client_mark_read(request.user, payload.ids)}


@api.post("send/", auth=ServiceKeyAuth(), response={200: SendOut, 201: SendOut, **_AUTH_ERRORS}, url_name="api-send")
def send(request, payload: SendIn):
    """Store a notification per distinct recipient: 201 when anything was created, 200
    when every one already existed under ``dedupe_key``; ``unknown_recipient`` stores
    nothing for anyone."""
    fields = payload.model_dump(exclude_unset=True)
    recipients = fields.pop("recipients")
    created_list, created = services.send(recipients, usernames=True, **fields)
    return Status(201 if created else 200, {"ids": [n.pk for n in created_list]})


@api.post("announce/", auth=ServiceKeyAuth(), response={201: AnnounceOut, **_AUTH_ERRORS}, url_name="api-announce")
def announce(request, payload: AnnounceIn):
    """Store one announcement for every active user, or a group's members."""
    fields = payload.model_dump(exclude_unset=True)
    group_name = fields.pop("group", None)
    audience = None
    if group_name is not None:
        check_text("group", group_name)
        audience = Group.objects.filter(name=group_name).first()
        if audience is None:
            raise InvalidParameter("group", f"no group named {group_name[:80]!r}")
    expires_at: datetime | None = services.parse_expires_at(fields.pop("expires_at", None))
    announcement = services.announce(audience=audience, expires_at=expires_at, **fields)
    return Status(201, {"id": announcement.pk})


# Delivery receipts, Web Push subscriptions and preferences (docs/protocol.md §10)


class AckIn(_Strict):
    """Every item of the user's stream with id <= ``id`` was shown on this device."""

    id: int
    client: str | None = Field(default=None, description="the device's client id (1-64 of A-Z a-z 0-9 _ . : -)")


class PushKeys(_Strict):
    p256dh: str = Field(description="65-byte uncompressed P-256 point, base64url")
    auth: str = Field(description="16 bytes, base64url")


class SubscriptionIn(_Strict):
    """The browser's ``PushSubscription.toJSON()``."""

    endpoint: str = Field(description="the push service's absolute https URL")
    keys: PushKeys
    expirationTime: int | float | None = None


class EndpointIn(_Strict):
    endpoint: str
    keys: dict[str, Any] | None = None
    expirationTime: int | float | None = None


class SubscriptionOut(Schema):
    id: int


class PublicKey(Schema):
    public_key: str = Field(description="the VAPID applicationServerKey, base64url")


class Preferences(_Strict):
    """Kind patterns (shell-style, ``fnmatch.fnmatchcase``)."""

    muted: list[str]
    no_push: list[str]


def _webpush_config():
    """The Web Push configuration (``push-subscriptions/`` answers 404 ``not_found`` for
    every method while Web Push is off: see ``_web_push_on``)."""
    return webpush.config()


def _web_push_on(view):
    """Wrap the ``push-subscriptions/`` view: every method is 404 ``not_found`` while Web
    Push is off (no VAPID key), so a client learns that before anything else."""

    def wrapped(request, *args, **kwargs):
        if webpush.config() is None:
            return error_response(404, "not_found", "Web Push is not configured on this server.")
        return view(request, *args, **kwargs)

    wrapped.csrf_exempt = True
    return wrapped


_PUSH_ERRORS = {**_AUTH_ERRORS, 404: Error}


@api.post("notifications/ack/", auth=PERSONAL, response={204: None, **_AUTH_ERRORS}, url_name="api-ack")
def ack(request, payload: AckIn):
    """Record a delivery receipt for this device (an id outside the user's stream changes
    nothing); ``ACK_RATE_LIMIT`` per user."""
    _rate_limit("notify.ack", str(request.user.pk), notify_settings.ACK_RATE_LIMIT)
    token = request.auth if isinstance(request.auth, ApiToken) else None
    device = receipts.device_key(payload.client, token_id=token.pk if token is not None else None)
    receipts.record_acks({(request.user.pk, device): payload.id})
    return Status(204, None)


@api.get("push-subscriptions/", auth=PERSONAL, response={200: PublicKey, **_PUSH_ERRORS},
         url_name="api-push-subscriptions")
def push_key(request):
    """The VAPID public key a browser subscribes with."""
    return {"public_key": _webpush_config().public_key}


@api.post("push-subscriptions/", auth=PERSONAL, response={200: SubscriptionOut, 201: SubscriptionOut, **_PUSH_ERRORS})
def subscribe(request, payload: SubscriptionIn):
    """Store a push subscription for the signed-in user: 201, or 200 with the same id for
    a known endpoint (which then belongs to this user, with these keys)."""
    cfg = _webpush_config()
    subscription, created = webpush.subscribe(request.user, payload.model_dump(exclude_unset=True), cfg)
    return Status(201 if created else 200, {"id": subscription.pk})


@api.delete("push-subscriptions/", auth=PERSONAL, response={204: None, **_PUSH_ERRORS})
def unsubscribe(request, payload: EndpointIn):
    """Remove the user's subscription with this endpoint (204 also when there is none;
    another user's subscription is untouched)."""
    _webpush_config()
    webpush.unsubscribe(request.user, payload.endpoint)
    return Status(204, None)


@api.get("preferences/", auth=PERSONAL, response={200: Preferences, **_AUTH_ERRORS}, url_name="api-preferences")
def get_preferences(request):
    """The user's preferences (the settings' defaults before any PUT)."""
    return preferences.get_prefs(request.user.pk).as_json()


@api.put("preferences/", auth=PERSONAL, response={200: Preferences, **_AUTH_ERRORS})
def put_preferences(request, payload: Preferences):
    """Replace both lists; answers the stored object."""
    return preferences.set_prefs(request.user, payload.model_dump()).as_json()


# Errors


def _answer(exc: ApiError) -> HttpResponseBase:
    return error_response(exc.status, exc.code, exc.message, exc.headers)


@api.exception_handler(ApiError)
def _api_error(request, exc: ApiError):
    return _answer(exc)


@api.exception_handler(RateLimited)
def _rate_limited(request, exc: RateLimited):
    return error_response(429, "rate_limited", str(exc), {"Retry-After": str(exc.retry_after)})


@api.exception_handler(InvalidParameter)
def _invalid(request, exc: InvalidParameter):
    return error_response(400, exc.code, str(exc))


@api.exception_handler(ValidationError)
def _invalid_schema(request, exc: ValidationError):
    error = exc.errors[0] if exc.errors else {}
    loc = [str(part) for part in error.get("loc", ())]
    # ("body", "payload", "recipients", 0, "int") or ("query", "limit"): the field is
    # the first name after the source (and the body's parameter name).
    # Nested fields join with dots up to a list index: "keys.auth", "muted".
    names = loc[2:] if loc[:1] == ["body"] else loc[1:]
    path = []
    for part in names:
        if part.isdigit():
            break
        path.append(part)
    name = ".".join(path) or "body"
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        problem = "is not a known field"
    elif kind == "missing":
        problem = "is required"
    elif name == "body" and kind in ("model_type", "model_attributes_type", "dict_type"):
        problem = "must be a JSON object"
    else:
        problem = str(error.get("msg", "is not valid")).removeprefix("Value error, ")
    return error_response(400, "invalid_parameter", f"{name}: {problem}")


@api.exception_handler(AuthenticationError)
def _unauthenticated(request, exc):
    return error_response(401, "not_authenticated", "Sign in, or send Authorization: Bearer <token>.",
                          {"WWW-Authenticate": 'Bearer realm="notify"'})


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    code = {400: "invalid_parameter", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
    return error_response(exc.status_code, code, str(exc.message))


@api.exception_handler(Http404)
def _not_found(request, exc):
    return error_response(404, "not_found", f"No such endpoint: {request.path[:200]}")


@api.exception_handler(Exception)
def _server_error(request, exc):
    logger.exception("notify: %s %s failed", request.method, request.path,
                     extra=log_fields("api.failed", method=request.method, path=request.path))
    return error_response(500, "server_error", "The server failed; try again later.")


def _finished(view):
    """Wrap a view of ``api.urls``: ``405`` as the JSON error body (ninja answers it in
    plain text), ``Cache-Control: no-store`` on every answer, and ``413`` for a POST
    body over ``MAX_BODY_BYTES`` before anything else reads it."""

    def wrapped(request, *args, **kwargs):
        try:
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                check_body_size(request)
        except ApiError as exc:
            return _answer(exc)
        response = view(request, *args, **kwargs)
        if response.status_code == 405 and not response.get("Content-Type", "").startswith("application/json"):
            allowed = response.get("Allow", "")
            response = error_response(405, "method_not_allowed",
                                      f"Method {request.method[:20]} is not allowed; use {allowed}.", {"Allow": allowed})
        response["Cache-Control"] = "no-store"
        return response

    wrapped.csrf_exempt = True
    return wrapped


def urlpatterns() -> list:
    """Return the URL patterns of ``api`` with every view wrapped by ``_finished``,
    without ninja's root view (``api/`` itself answers 404 like any unknown path) and
    without a namespace of their own (names: ``api-notifications``, ``api-read``,
    ``openapi-json``, ... in ``notify.urls``' namespace); include them at
    ``<prefix>api/``."""
    patterns, _app_name, _namespace = api.urls
    patterns = [p for p in patterns if p.name != "api-root"]
    for pattern in patterns:
        if pattern.name == "api-push-subscriptions":
            pattern.callback = _web_push_on(pattern.callback)
        pattern.callback = _finished(pattern.callback)
    return patterns
