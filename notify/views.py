"""Django views: the inbox page, and the answer for streams Django should not see."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt, ensure_csrf_cookie

from .http.errors import error_response
from .conf import notify_settings


@login_required
@ensure_csrf_cookie
def inbox_page(request):
    """Render the signed-in user's inbox page (docs/protocol.md §7), ``notify/inbox.html``
    extending ``notify/base.html``; anonymous users are redirected to
    ``settings.LOGIN_URL`` with ``?next=<this path>``."""
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
