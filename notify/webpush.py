"""Web Push: VAPID configuration, push subscriptions, and sending one push.

The protocol (RFC 8030), message encryption (RFC 8291, ``aes128gcm``) and VAPID
(RFC 8292) are pywebpush's and py-vapid's; nothing here does cryptography by hand.

Web Push is on when ``NOTIFY["WEBPUSH_VAPID_PRIVATE_KEY"]`` is set (``config()`` is
then not None). Endpoints are checked when a browser subscribes (``validate_subscription``)
and again, by their DNS answers, before each push (``send_push``), so that the server
cannot be made to POST to loopback, private or link-local addresses; redirects are not
followed.
"""

import base64
import binascii
import enum
import functools
import ipaddress
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.db.models import Max
from py_vapid import Vapid
from py_vapid.utils import b64urlencode
from pywebpush import WebPusher

from .conf import notify_settings
from .exceptions import InvalidParameter
from .validation import check_text
from .models import Entry, PushSubscription
from .serializers import dumps

logger = logging.getLogger(__name__)

# Largest push payload (bytes of JSON): push services cap payloads near 4 KiB.
MAX_PAYLOAD_BYTES = 3000
MAX_ENDPOINT_LENGTH = 2000

_B64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")


def b64url_decode(value: Any, name: str) -> bytes:
    """Decode base64url (padding optional) or raise ``InvalidParameter(name)``."""
    if not isinstance(value, str) or not _B64URL.fullmatch(value):
        raise InvalidParameter(name, "must be a base64url string")
    try:
        return base64.urlsafe_b64decode(value.rstrip("=") + "=" * (-len(value.rstrip("=")) % 4))
    except (binascii.Error, ValueError):
        raise InvalidParameter(name, "must be a base64url string") from None


# --- configuration ---------------------------------------------------------------------


@dataclass(frozen=True)
class WebPushConfig:
    """Checked Web Push settings.

    Attributes:
        vapid: the py-vapid signer of the private key.
        public_key: the browser's ``applicationServerKey``: the uncompressed P-256
            public point (65 bytes) in base64url without padding.
        subject: the VAPID ``sub`` claim (``mailto:`` or https URL).
        after_seconds: an item unacknowledged this long is pushed (int).
        ttl_seconds: the push's ``TTL`` header (int).
        allow_insecure: admit ``http://`` and loopback endpoints (tests).
    """

    vapid: Vapid
    public_key: str
    subject: str
    after_seconds: int
    ttl_seconds: int
    allow_insecure: bool


def load_vapid_key(value: str) -> Vapid:
    """Return a py-vapid ``Vapid`` for a private key: the 32-byte P-256 scalar in
    base64url (padding optional), or PEM (``BEGIN EC PRIVATE KEY`` or ``BEGIN PRIVATE KEY``).

    Raises:
        ValueError: anything else, or a key on another curve.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError("is empty")
    text = value.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"is not a readable PEM private key ({exc})") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("is not a P-256 (prime256v1) EC private key")
        return Vapid(key)
    if not _B64URL.fullmatch(text):
        raise ValueError("is neither PEM nor base64url")
    raw = base64.urlsafe_b64decode(text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4))
    if len(raw) != 32:
        raise ValueError(f"decodes to {len(raw)} bytes, not the 32 of a P-256 private key")
    number = int.from_bytes(raw, "big")
    if not 0 < number < 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551:
        raise ValueError("is not a valid P-256 private key")
    return Vapid(ec.derive_private_key(number, ec.SECP256R1()))


def public_key_of(vapid: Vapid) -> str:
    """The uncompressed public point of ``vapid`` in base64url without padding."""
    raw = vapid.public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return b64urlencode(raw)


def _int_setting(name: str, minimum: int) -> int:
    value = getattr(notify_settings, name)
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or isinstance(value, bool) or number < minimum:
        raise ImproperlyConfigured(
            f"NOTIFY['{name}'] (environment NOTIFY_{name}) must be an integer >= {minimum}, not {value!r}."
        )
    return number


@functools.lru_cache(maxsize=8)
def _build(key: str, subject: str, after: int, ttl: int, insecure: bool) -> WebPushConfig:
    try:
        vapid = load_vapid_key(key)
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"NOTIFY['WEBPUSH_VAPID_PRIVATE_KEY'] (environment NOTIFY_WEBPUSH_VAPID_PRIVATE_KEY) {exc}; "
            "give the 32-byte P-256 private key in base64url or PEM (manage.py notify_webpush_keys makes one)."
        ) from None
    parsed = urlsplit(subject) if isinstance(subject, str) else None
    if parsed is None or not (
        (parsed.scheme == "mailto" and "@" in parsed.path) or (parsed.scheme == "https" and parsed.hostname)
    ):
        raise ImproperlyConfigured(
            f"NOTIFY['WEBPUSH_VAPID_SUBJECT'] (environment NOTIFY_WEBPUSH_VAPID_SUBJECT) must be a mailto: "
            f"or https URL, not {subject!r}."
        )
    return WebPushConfig(vapid, public_key_of(vapid), subject, after, ttl, insecure)


def config() -> WebPushConfig | None:
    """Return the checked Web Push settings, or None when Web Push is off (no key).

    Raises:
        ImproperlyConfigured: a bad key, subject, delay or TTL; the message names the
            setting and its environment variable.
    """
    key = notify_settings.WEBPUSH_VAPID_PRIVATE_KEY
    if key in (None, ""):
        return None
    after = _int_setting("WEBPUSH_AFTER_SECONDS", 0)
    ttl = _int_setting("WEBPUSH_TTL_SECONDS", 0)
    insecure = notify_settings.WEBPUSH_ALLOW_INSECURE_ENDPOINTS
    if isinstance(insecure, str):
        insecure = insecure.lower() in ("1", "true", "yes")
    return _build(str(key), notify_settings.WEBPUSH_VAPID_SUBJECT, after, ttl, bool(insecure))


def generate_key_pair() -> tuple[str, str]:
    """Draw a new VAPID key pair.

    Returns:
        ``(private scalar in base64url, public point in base64url)``, no padding.
    """
    vapid = Vapid()
    vapid.generate_keys()
    scalar = vapid.private_key.private_numbers().private_value.to_bytes(32, "big")
    return b64urlencode(scalar), public_key_of(vapid)


# --- endpoints -------------------------------------------------------------------------


def address_allowed(address: str, *, allow_loopback: bool) -> bool:
    """Whether a push may go to the IP ``address``: a public unicast address, or a
    loopback one with ``allow_loopback`` (tests)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return allow_loopback
    return not (ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_unspecified
                or ip.is_reserved or not ip.is_global)


def validate_endpoint(endpoint: Any, *, allow_insecure: bool) -> str:
    """Check a push endpoint URL.

    Returns:
        ``endpoint`` unchanged.
    Raises:
        InvalidParameter (``endpoint``): not an absolute https URL (http with
            ``allow_insecure``), with credentials, or naming ``localhost`` or a literal
            loopback (unless ``allow_insecure``), private or link-local IP.
    """
    if not isinstance(endpoint, str) or not endpoint:
        raise InvalidParameter("endpoint", "must be the push service's URL")
    if len(endpoint) > MAX_ENDPOINT_LENGTH:
        raise InvalidParameter("endpoint", f"at most {MAX_ENDPOINT_LENGTH} characters")
    check_text("endpoint", endpoint)
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        raise InvalidParameter("endpoint", "is not a valid URL") from None
    schemes = ("https", "http") if allow_insecure else ("https",)
    if parts.scheme not in schemes or not host:
        raise InvalidParameter("endpoint", "must be an absolute https URL")
    if parts.username is not None or parts.password is not None or any(c.isspace() for c in endpoint):
        raise InvalidParameter("endpoint", "must not carry credentials or spaces")
    host = host.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        if not allow_insecure:
            raise InvalidParameter("endpoint", "must not name localhost")
        return endpoint
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return endpoint  # a host name: its addresses are checked before each push
    if not address_allowed(host, allow_loopback=allow_insecure):
        raise InvalidParameter("endpoint", "must not be a loopback, private or link-local address")
    return endpoint


def validate_subscription(value: Any, *, allow_insecure: bool) -> tuple[str, str, str]:
    """Check a browser's ``PushSubscription.toJSON()``.

    Returns:
        ``(endpoint, p256dh, auth)`` as sent (base64url strings).
    Raises:
        InvalidParameter: naming ``endpoint``, ``keys``, ``keys.p256dh`` (not a 65-byte
            uncompressed P-256 point) or ``keys.auth`` (not 16 bytes).
    """
    endpoint = validate_endpoint(value.get("endpoint"), allow_insecure=allow_insecure)
    keys = value.get("keys")
    if not isinstance(keys, dict):
        raise InvalidParameter("keys", "must be an object with p256dh and auth")
    p256dh = keys.get("p256dh")
    point = b64url_decode(p256dh, "keys.p256dh")
    if len(point) != 65 or point[0] != 4:
        raise InvalidParameter("keys.p256dh", "must be a 65-byte uncompressed P-256 point")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise InvalidParameter("keys.p256dh", "is not a point on P-256") from None
    auth = keys.get("auth")
    if len(b64url_decode(auth, "keys.auth")) != 16:
        raise InvalidParameter("keys.auth", "must be 16 bytes")
    return endpoint, p256dh, auth


# --- subscriptions ---------------------------------------------------------------------


def subscribe(user, value: dict[str, Any], cfg: WebPushConfig) -> tuple[PushSubscription, bool]:
    """Store a push subscription for ``user``.

    The same endpoint again (by any user) updates that row: it then belongs to ``user``
    with the keys just sent. A new row starts after the newest stored item (nothing
    older is pushed to it).

    Returns:
        ``(subscription, created)``.
    Raises:
        InvalidParameter: see ``validate_subscription``.
    """
    endpoint, p256dh, auth = validate_subscription(value, allow_insecure=cfg.allow_insecure)
    for _ in range(3):
        existing = PushSubscription.objects.filter(endpoint=endpoint).first()
        if existing is not None:
            if existing.user_id != user.pk:
                existing.pushed_through = max(existing.pushed_through, _latest_id())
            existing.user = user
            existing.p256dh, existing.auth = p256dh, auth
            existing.save(update_fields=["user", "p256dh", "auth", "pushed_through"])
            return existing, False
        try:
            with transaction.atomic():
                created = PushSubscription.objects.create(
                    user=user, endpoint=endpoint, p256dh=p256dh, auth=auth, pushed_through=_latest_id()
                )
            return created, True
        except IntegrityError:  # the same endpoint was stored meanwhile: update it
            continue
    raise RuntimeError("push subscription kept changing")  # pragma: no cover


def unsubscribe(user, endpoint: Any) -> int:
    """Delete ``user``'s subscription with ``endpoint`` (another user's is untouched).

    Returns:
        How many rows were deleted (0 or 1).
    Raises:
        InvalidParameter (``endpoint``): not a string.
    """
    if not isinstance(endpoint, str) or not endpoint:
        raise InvalidParameter("endpoint", "must be the subscription's endpoint URL")
    deleted, _ = PushSubscription.objects.filter(user=user, endpoint=endpoint).delete()
    return deleted


def _latest_id() -> int:
    return Entry.objects.aggregate(top=Max("id"))["top"] or 0


# --- sending ---------------------------------------------------------------------------


def payload_for(item: dict[str, Any]) -> bytes:
    """Encode a notification object as the push payload (compact UTF-8 JSON).

    Over ``MAX_PAYLOAD_BYTES`` its ``data`` becomes ``{}`` (the service worker fetches
    the item when clicked); if it is still too long, ``body`` is cut to fit.
    """
    raw = dumps(item).encode()
    if len(raw) <= MAX_PAYLOAD_BYTES:
        return raw
    item = {**item, "data": {}}
    raw = dumps(item).encode()
    while len(raw) > MAX_PAYLOAD_BYTES and item["body"]:
        over = len(raw) - MAX_PAYLOAD_BYTES
        body = item["body"]
        item["body"] = body[: max(0, len(body) - over - 1)].rstrip() + "…"
        if item["body"] == "…" or len(item["body"]) >= len(body):
            item["body"] = ""
        raw = dumps(item).encode()
    return raw


class Outcome(enum.Enum):
    SENT = "sent"  # the push service accepted it (2xx)
    GONE = "gone"  # 404/410: the subscription was deleted
    FAILED = "failed"  # anything else (logged); not retried


class _NoRedirectSession(requests.Session):
    """A requests session that never follows redirects (a push service answers 201)."""

    def request(self, *args, **kwargs):
        kwargs["allow_redirects"] = False
        return super().request(*args, **kwargs)


_local = threading.local()


def _session() -> requests.Session:
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = _NoRedirectSession()
    return session


def _host_allowed(endpoint: str, cfg: WebPushConfig) -> bool:
    """Resolve the endpoint's host and check every address (``address_allowed``)."""
    parts = urlsplit(endpoint)
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                                   type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    return bool(infos) and all(address_allowed(info[4][0], allow_loopback=cfg.allow_insecure) for info in infos)


_vapid_cache: dict[tuple[int, str], tuple[dict[str, str], float]] = {}
_vapid_lock = threading.Lock()
VAPID_LIFETIME_SECONDS = 12 * 3600


def vapid_headers(cfg: WebPushConfig, endpoint: str) -> dict[str, str]:
    """The VAPID ``Authorization`` (and ``Crypto-Key``) headers for the endpoint's
    origin: a JWT signed by py-vapid, valid 12 hours, reused for 11."""
    parts = urlsplit(endpoint)
    audience = f"{parts.scheme}://{parts.netloc}"
    key = (id(cfg), audience)
    now = time.time()
    with _vapid_lock:
        cached = _vapid_cache.get(key)
        if cached is not None and cached[1] > now + 3600:
            return cached[0]
    expires = int(now) + VAPID_LIFETIME_SECONDS
    headers = cfg.vapid.sign({"sub": cfg.subject, "aud": audience, "exp": expires})
    with _vapid_lock:
        _vapid_cache[key] = (headers, expires)
    return headers


def send_push(endpoint: str, p256dh: str, auth: str, payload: bytes, cfg: WebPushConfig, *,
              topic: str | None = None) -> tuple[Outcome, int | None]:
    """Encrypt ``payload`` (RFC 8291 ``aes128gcm``, by pywebpush) for a subscription
    and POST it with VAPID to its push service. No database access.

    Returns:
        ``(outcome, HTTP status or None)``: ``GONE`` for 404/410 (the caller deletes
        the subscription), ``SENT`` for 2xx, else ``FAILED`` (logged).
    """
    if not _host_allowed(endpoint, cfg):
        logger.warning("notify: push endpoint %s resolves to a forbidden address", endpoint[:100])
        return Outcome.FAILED, None
    headers = {"Urgency": "normal", **vapid_headers(cfg, endpoint)}
    if topic:
        headers["Topic"] = topic
    info = {"endpoint": endpoint, "keys": {"p256dh": p256dh, "auth": auth}}
    try:
        response = WebPusher(info, requests_session=_session()).send(
            payload, headers, ttl=cfg.ttl_seconds, timeout=notify_settings.WEBPUSH_TIMEOUT_SECONDS
        )
    except requests.RequestException as exc:
        logger.warning("notify: push to %s failed: %s", endpoint[:100], exc)
        return Outcome.FAILED, None
    status = response.status_code
    if 200 <= status < 300:
        return Outcome.SENT, status
    if status in (404, 410):
        return Outcome.GONE, status
    logger.warning("notify: push to %s answered %s: %s", endpoint[:100], status, response.text[:200])
    return Outcome.FAILED, status
