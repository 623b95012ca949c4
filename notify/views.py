"""Django views: the inbox and preferences pages, the service worker, and the answer for
streams Django should not see."""

from pathlib import Path

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt, ensure_csrf_cookie

from .http.errors import error_response
from . import preferences
from .conf import notify_settings
from .exceptions import InvalidParameter


@csrf_exempt
def inbox_page(request):
    """Render the signed-in user's inbox page (docs/protocol.md §7), ``notify/inbox.html``
    extending ``notify/base.html``; anonymous users are redirected to
    ``settings.LOGIN_URL`` with ``?next=<this path>``. The page only reads: any method
    but GET and HEAD is ``405 method_not_allowed`` as JSON (it sits under notify's
    prefix, where every error is JSON), before any CSRF check could answer in HTML."""
    if request.method not in ("GET", "HEAD"):
        return error_response(405, "method_not_allowed", f"Method {request.method[:20]} is not allowed; use GET.",
                              {"Allow": "GET, HEAD"})
    return _inbox(request)


@login_required
@ensure_csrf_cookie
def _inbox(request):
    return render(request, "notify/inbox.html", {"heartbeat_seconds": notify_settings.HEARTBEAT_SECONDS})


@csrf_exempt
def stream_not_routed(request):
    """``poll/`` and ``stream/`` reached Django: the site's ASGI application is not
    ``notify.asgi.get_application``, which routes them to their consumers. Answers
    ``404 not_found`` as JSON naming the fix."""
    return error_response(
        404, "not_found",
        f"{request.path[:200]} is served by the ASGI application of notify.asgi.get_application.",
    )


# The service worker must be served under notify's prefix, not /static/, for its scope.
SERVICE_WORKER = Path(__file__).resolve().parent / "static" / "notify" / "sw.js"


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
