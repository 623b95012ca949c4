"""ASGI authentication: a Bearer token when one is given, else the session (docs/protocol.md §2)."""

import logging

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser

from .services import authenticate_token

logger = logging.getLogger("notify")


def bearer_token(header: str | None) -> str | None:
    """Return the token of an ``Authorization: Bearer <token>`` header value (RFC 6750).

    Returns:
        None when there is no header; ``""`` (which fails authentication) when it is
        not the Bearer scheme.
    """
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def authorization(headers) -> str | None:
    """Return the ``Authorization`` header of ASGI ``headers`` (``(name, value)`` byte
    pairs) as text, or None."""
    for name, value in headers:
        if name == b"authorization":
            return value.decode("latin1")
    return None


class TokenOrSessionMiddleware:
    """Set ``scope["user"]`` from a Bearer token, or from the session cookie.

    Also sets ``scope["notify_auth"]`` to ``"token"`` or ``"session"`` and
    ``scope["notify_token"]`` to the ``ApiToken`` (or None). A request with both a
    token and a cookie is judged by the token. A service key authenticates no user
    (``AnonymousUser``): it is good for the HTTP send/announce API only.
    """

    def __init__(self, inner):
        self.inner = inner
        self.session_stack = AuthMiddlewareStack(inner)

    async def __call__(self, scope, receive, send):
        raw = bearer_token(authorization(scope.get("headers", ())))
        if raw is None:
            scope = dict(scope, notify_auth="session", notify_token=None)
            return await self.session_stack(scope, receive, send)
        token = await database_sync_to_async(authenticate_token, thread_sensitive=False)(raw)
        user = token.user if token is not None and not token.is_service else AnonymousUser()
        scope = dict(scope, notify_auth="token", notify_token=token, user=user)
        return await self.inner(scope, receive, send)
