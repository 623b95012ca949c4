"""The sign-in views (``/accounts/login/`` and the admin's) with a throttle (issue 10).

Policy (settings, django-ratelimit fixed windows in Django's cache, so shared by every
process when ``REDIS_URL`` is set):

- ``LOGIN_RATE_PER_USERNAME`` (default ``"10/10m"``): sign-in attempts (POSTs) for one
  username, case-insensitive, whatever the password or the client address;
- ``LOGIN_RATE_PER_ADDRESS`` (default ``"50/10m"``): attempts from one client address
  (``REMOTE_ADDR``; behind a proxy run daphne with ``--proxy-headers``), whatever the
  username.

Past either, the form answers ``429`` with a ``Retry-After`` header (whole seconds) and
is not checked at all (the right password does not help until the window ends); the
refusal is logged at WARNING on ``notify``. Anyone can thus lock one username out for
the rest of a window: the price of stopping password guessing without accounts.
"""

import logging

from django.conf import settings
from django.contrib import admin
from django.contrib.auth.views import LoginView
from django.http import HttpResponse

from notify.services import rate_limit_wait

logger = logging.getLogger("notify")


def sign_in_wait(request) -> int | None:
    """Count one sign-in attempt (a POST) against the policy above.

    Returns:
        Whole seconds to wait (at least 1) when the username or the address is over
        its rate, else None.
    """
    username = str(request.POST.get("username", "")).strip().lower()
    address = request.META.get("REMOTE_ADDR", "")
    waits = [
        rate_limit_wait("login.username", username, settings.LOGIN_RATE_PER_USERNAME) if username else None,
        rate_limit_wait("login.address", address, settings.LOGIN_RATE_PER_ADDRESS),
    ]
    wait = max((w for w in waits if w is not None), default=None)
    if wait is not None:
        logger.warning("notify: sign-in throttled for username %r from %s (retry in %d s)", username[:150],
                       address, wait)
    return wait


class ThrottledLoginView(LoginView):
    """``LoginView`` that refuses attempts past the policy above with 429 (the form
    again, with the time to wait)."""

    def post(self, request, *args, **kwargs):
        wait = sign_in_wait(request)
        if wait is None:
            return super().post(request, *args, **kwargs)
        context = self.get_context_data(form=self.get_form_class()(request), throttled_minutes=-(-wait // 60))
        response = self.render_to_response(context, status=429)
        response["Retry-After"] = str(wait)
        return response


def admin_login(request, *args, **kwargs):
    """The admin's sign-in view under the same policy (429 as plain text past it)."""
    if request.method == "POST":
        wait = sign_in_wait(request)
        if wait is not None:
            response = HttpResponse(f"Too many sign-in attempts; try again in {wait} s.\n", status=429,
                                    content_type="text/plain; charset=utf-8")
            response["Retry-After"] = str(wait)
            return response
    return admin.site.login(request, *args, **kwargs)
