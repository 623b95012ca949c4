"""HTTP endpoints of delivery receipts, Web Push and preferences (issue 14).

Under ``/notify/``, with the authentication, CSRF and error rules of
``notify.api_views`` (every answer JSON, errors as CONTRACT §2):

- ``POST api/notifications/ack/`` ``{"id": N, "client"?: str}``: 204 (notify.receipts).
- ``GET|POST|DELETE api/push-subscriptions/``: the VAPID public key; store or remove a
  browser's push subscription (notify.webpush). 404 ``not_found`` for every method
  when Web Push is off.
- ``GET|PUT api/preferences/``: ``{"muted": [...], "no_push": [...]}`` (notify.preferences).
- ``sw.js``: the service worker; ``preferences/``: the preferences page.
"""

import functools
import json
import logging
from pathlib import Path
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt

from . import preferences, receipts, webpush
from .conf import notify_settings
from .exceptions import InvalidParameter, RateLimited
from .http.api import _authenticate, _rate_limit, check_body_size
from .http.errors import ApiError, error_response, not_found

logger = logging.getLogger(__name__)


def _json_body(request) -> dict[str, Any]:
    """The request body as a JSON object (413 over ``MAX_BODY_BYTES``; else 400 naming
    ``body``)."""
    check_body_size(request)
    try:
        value = json.loads(request.body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidParameter("body", "must be a JSON object") from None
    if not isinstance(value, dict):
        raise InvalidParameter("body", "must be a JSON object")
    return value


def _only(body: dict[str, Any], known: set[str]) -> None:
    for name in body:
        if name not in known:
            raise InvalidParameter(str(name)[:40], "is not a known field")


def api_view(method: str):
    """Decorate a view for signed-in users (personal token or session, CSRF on
    unsafe methods, as ``notify.http.api``): 405 for another method, and every error
    as the JSON error body. The view is called as ``view(request, token)``."""

    def decorate(view):
        @csrf_exempt
        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            try:
                if request.method != method:
                    raise ApiError(405, "method_not_allowed",
                                   f"Method {request.method} is not allowed; use {method}.", {"Allow": method})
                token = _authenticate(request, service=False)
                response = view(request, token, *args, **kwargs)
            except ApiError as exc:
                return error_response(exc.status, exc.code, exc.message, exc.headers)
            except RateLimited as exc:
                return error_response(429, "rate_limited", str(exc), {"Retry-After": str(exc.retry_after)})
            except InvalidParameter as exc:
                return error_response(400, exc.code, str(exc))
            except Exception:
                logger.exception("notify: %s %s failed", request.method, request.path)
                return error_response(500, "server_error", "The server failed; try again later.")
            response["Cache-Control"] = "no-store"
            return response

        return wrapped

    return decorate

SERVICE_WORKER = Path(__file__).resolve().parent / "static" / "notify" / "sw.js"
SUBSCRIPTION_FIELDS = {"endpoint", "keys", "expirationTime"}


@api_view("POST")
def ack(request, token):
    """``POST notifications/ack/`` ``{"id": <int>, "client": <device id, optional>}``:
    every item of the user's stream with id <= ``id`` was shown on this device.
    204 also when ``id`` is not in the user's stream (nothing changes); a non-integer
    ``id`` is 400 ``invalid_parameter``; ``ACK_RATE_LIMIT`` per user."""
    body = _json_body(request)
    _only(body, {"id", "client"})
    pk = body.get("id")
    if type(pk) is not int:
        raise InvalidParameter("id", "must be an integer")
    client = body.get("client")
    if client is not None and not isinstance(client, str):
        raise InvalidParameter("client", "must be a string")
    _rate_limit("notify.ack", str(request.user.pk), notify_settings.ACK_RATE_LIMIT)
    device = receipts.device_key(client, token_id=token.pk if token is not None else None)
    receipts.record_acks({(request.user.pk, device): pk})
    return HttpResponse(status=204)


@api_view("GET")
def _push_key(request, token):
    cfg = webpush.config()
    return JsonResponse({"public_key": cfg.public_key})


@api_view("POST")
def _subscribe(request, token):
    body = _json_body(request)
    _only(body, SUBSCRIPTION_FIELDS)
    subscription, created = webpush.subscribe(request.user, body, webpush.config())
    return JsonResponse({"id": subscription.pk}, status=201 if created else 200)


@api_view("DELETE")
def _unsubscribe(request, token):
    body = _json_body(request)
    _only(body, SUBSCRIPTION_FIELDS)
    webpush.unsubscribe(request.user, body.get("endpoint"))
    return HttpResponse(status=204)


@csrf_exempt
def push_subscriptions(request):
    """``push-subscriptions/``: GET ``{"public_key": <VAPID applicationServerKey>}``;
    POST a ``PushSubscription.toJSON()``: 201 ``{"id"}`` (200 for a known endpoint, which
    then belongs to this user with these keys); DELETE ``{"endpoint"}``: 204. Every
    method is 404 ``not_found`` while Web Push is off (no VAPID key)."""
    if webpush.config() is None:
        return not_found(request)
    view = {"GET": _push_key, "DELETE": _unsubscribe}.get(request.method, _subscribe)
    return view(request)


@api_view("GET")
def _get_preferences(request, token):
    return JsonResponse(preferences.get_prefs(request.user.pk).as_json())


@api_view("PUT")
def _put_preferences(request, token):
    return JsonResponse(preferences.set_prefs(request.user, _json_body(request)).as_json())


@csrf_exempt
def preferences_api(request):
    """``preferences/``: GET the user's ``{"muted": [...], "no_push": [...]}`` (the
    settings' defaults before any PUT); PUT both lists (400 naming a missing, unknown or
    bad key; nothing stored) and get the stored object back."""
    return (_put_preferences if request.method == "PUT" else _get_preferences)(request)


def service_worker(request):
    """``sw.js``: the service worker that shows pushes (served here, not under
    /static/, so that its scope is ``/notify/``)."""
    response = HttpResponse(SERVICE_WORKER.read_bytes(), content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    return response


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


@login_required
def preferences_page(request):
    """``preferences/``: the signed-in user's preferences as a form (one kind pattern
    per line); a POST stores them (same rules as the API) and redirects here."""
    error = None
    current = preferences.get_prefs(request.user.pk)
    if request.method == "POST":
        wanted = {"muted": _lines(request.POST.get("muted", "")), "no_push": _lines(request.POST.get("no_push", ""))}
        try:
            preferences.set_prefs(request.user, wanted)
        except InvalidParameter as exc:
            error = str(exc)
            current = preferences.Prefs(tuple(wanted["muted"]), tuple(wanted["no_push"]))
        else:
            return HttpResponseRedirect(request.path + "?saved=1")
    return render(
        request,
        "notify/preferences.html",
        {"muted": "\n".join(current.muted), "no_push": "\n".join(current.no_push), "error": error,
         "saved": request.GET.get("saved") == "1" and error is None},
        status=400 if error else 200,
    )
