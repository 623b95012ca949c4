"""Django views: the inbox page."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from .conf import notify_settings


@login_required
@ensure_csrf_cookie
def inbox_page(request):
    """Render the signed-in user's inbox page (CONTRACT §7); anonymous users are
    redirected to ``/accounts/login/?next=/``."""
    return render(
        request,
        "notify/inbox.html",
        {"heartbeat_seconds": notify_settings.HEARTBEAT_SECONDS},
    )
