"""Web Push (issue 14): the subscription API, escalation against a local fake push
service (payloads decrypted with http_ece), and the notify_escalate command."""

import base64
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from notify import services
from notify.escalation import Escalator
from notify.models import Entry, EscalationState, PushSubscription
from notify.preferences import set_prefs
from notify.receipts import record_acks
from notify.webpush import MAX_PAYLOAD_BYTES, config, generate_key_pair, payload_for

from .conftest import ROOT, child_env
from .pushhelpers import BrowserKeys, FakePushService

pytestmark = pytest.mark.django_db(transaction=True)

SUBS = "/notify/api/push-subscriptions/"
VAPID_PRIVATE, VAPID_PUBLIC = generate_key_pair()


@pytest.fixture(autouse=True)
def fast_passwords(settings, channel_layer):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def webpush_on(settings):
    settings.NOTIFY = {
        "WEBPUSH_VAPID_PRIVATE_KEY": VAPID_PRIVATE,
        "WEBPUSH_VAPID_SUBJECT": "mailto:ops@example.com",
        "WEBPUSH_AFTER_SECONDS": 30,
        "WEBPUSH_ALLOW_INSECURE_ENDPOINTS": True,
    }
    return settings.NOTIFY


@pytest.fixture
def push_service():
    service = FakePushService()
    yield service
    service.close()


def bearer(token):
    return Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {token}")


def error_of(response, status, code="invalid_parameter"):
    assert response.status_code == status, response.content
    body = response.json()["error"]
    assert body["code"] == code
    return body["message"]


def subscribe(user, service, name, keys=None):
    keys = keys or BrowserKeys()
    sub = PushSubscription.objects.create(
        user=user, endpoint=service.endpoint(name), p256dh=keys.p256dh, auth=keys.auth,
        pushed_through=Entry.objects.order_by("-id").values_list("id", flat=True).first() or 0,
    )
    return sub, keys


def age(*entries, seconds=60):
    """Make entries look stored ``seconds`` ago (instead of waiting for the delay); every
    user joined before that."""
    get_user_model().objects.update(date_joined=timezone.now() - timedelta(days=2))
    Entry.objects.filter(pk__in=[e.pk for e in entries]).update(
        created_at=timezone.now() - timedelta(seconds=seconds))


def escalate():
    escalator = Escalator(config())
    try:
        return escalator.run(once=True)
    finally:
        escalator.close()


# --- the subscription API -------------------------------------------------------------


def test_without_a_vapid_key_every_method_is_404(user, token):
    client = bearer(token)
    body = BrowserKeys().subscription("https://push.example.com/x")
    assert error_of(client.get(SUBS), 404, "not_found")
    for method in ("post", "delete", "put"):
        response = getattr(client, method)(SUBS, body, content_type="application/json")
        assert error_of(response, 404, "not_found")


def test_subscribe_resubscribe_and_delete(webpush_on, user, other_user, token):
    from notify.models import ApiToken

    keys = BrowserKeys()
    body = keys.subscription("https://push.example.com/send/abc")
    client = bearer(token)
    assert client.get(SUBS).json() == {"public_key": VAPID_PUBLIC}
    created = client.post(SUBS, body, content_type="application/json")
    assert created.status_code == 201
    sub_id = created.json()["id"]
    assert isinstance(sub_id, int)
    again = client.post(SUBS, body, content_type="application/json")
    assert again.status_code == 200 and again.json() == {"id": sub_id}

    # The same endpoint from another user: same id, now theirs, with the new keys.
    other = bearer(ApiToken.objects.issue(user=other_user))
    new_keys = BrowserKeys()
    moved = other.post(SUBS, new_keys.subscription(body["endpoint"]), content_type="application/json")
    assert moved.status_code == 200 and moved.json() == {"id": sub_id}
    stored = PushSubscription.objects.get()
    assert stored.user_id == other_user.pk and stored.p256dh == new_keys.p256dh and stored.auth == new_keys.auth

    # DELETE by a user who does not own it: 204, untouched; by the owner: 204, gone.
    assert client.delete(SUBS, {"endpoint": body["endpoint"]}, content_type="application/json").status_code == 204
    assert PushSubscription.objects.filter(pk=sub_id).exists()
    assert other.delete(SUBS, {"endpoint": body["endpoint"]}, content_type="application/json").status_code == 204
    assert not PushSubscription.objects.exists()
    assert other.delete(SUBS, {"endpoint": body["endpoint"]}, content_type="application/json").status_code == 204


def test_session_post_and_delete_need_csrf(webpush_on, user):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    body = BrowserKeys().subscription("https://push.example.com/s/1")
    error_of(browser.post(SUBS, body, content_type="application/json"), 403, "csrf_failed")
    error_of(browser.delete(SUBS, {"endpoint": body["endpoint"]}, content_type="application/json"), 403, "csrf_failed")
    browser.get("/")
    csrf = browser.cookies["csrftoken"].value
    assert browser.post(SUBS, body, content_type="application/json", HTTP_X_CSRFTOKEN=csrf).status_code == 201
    response = browser.delete(SUBS, {"endpoint": body["endpoint"]}, content_type="application/json",
                              HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 204 and not PushSubscription.objects.exists()


@pytest.mark.parametrize("endpoint", [
    "http://push.example.com/x", "push.example.com/x", "ftp://push.example.com/x", "https:///x", "",
    "https://localhost/x", "https://127.0.0.1/x", "https://[::1]/x", "https://10.1.2.3/x",
    "https://192.168.0.9/x", "https://172.16.0.1/x", "https://169.254.169.254/latest", "https://[fe80::1]/x",
    "https://0.0.0.0/x", "https://user:pw@push.example.com/x", 17,
])
def test_bad_endpoints_are_refused(settings, user, token, endpoint):
    settings.NOTIFY = {"WEBPUSH_VAPID_PRIVATE_KEY": VAPID_PRIVATE}
    body = BrowserKeys().subscription(endpoint)
    message = error_of(bearer(token).post(SUBS, body, content_type="application/json"), 400)
    assert message.startswith("endpoint")
    assert not PushSubscription.objects.exists()


def test_loopback_and_http_only_with_the_test_flag(webpush_on, user, token):
    for endpoint in ("http://127.0.0.1:9/push", "http://localhost:9/push"):
        body = BrowserKeys().subscription(endpoint)
        assert bearer(token).post(SUBS, body, content_type="application/json").status_code == 201
    # Private addresses stay refused even then.
    body = BrowserKeys().subscription("http://10.0.0.1/push")
    assert error_of(bearer(token).post(SUBS, body, content_type="application/json"), 400).startswith("endpoint")


@pytest.mark.parametrize("keys, name", [
    ({"p256dh": "AAAA", "auth": BrowserKeys().auth}, "keys.p256dh"),
    ({"p256dh": BrowserKeys().p256dh[:-4], "auth": BrowserKeys().auth}, "keys.p256dh"),
    ({"p256dh": "A" + BrowserKeys().p256dh[1:], "auth": BrowserKeys().auth}, "keys.p256dh"),
    ({"p256dh": "not base64!", "auth": BrowserKeys().auth}, "keys.p256dh"),
    ({"auth": BrowserKeys().auth}, "keys.p256dh"),
    ({"p256dh": BrowserKeys().p256dh, "auth": "AAAAAAAA"}, "keys.auth"),
    ({"p256dh": BrowserKeys().p256dh, "auth": BrowserKeys().auth + "AAAA"}, "keys.auth"),
    ({"p256dh": BrowserKeys().p256dh}, "keys.auth"),
])
def test_bad_keys_are_refused(settings, user, token, keys, name):
    settings.NOTIFY = {"WEBPUSH_VAPID_PRIVATE_KEY": VAPID_PRIVATE}
    body = {"endpoint": "https://push.example.com/x", "keys": keys}
    assert error_of(bearer(token).post(SUBS, body, content_type="application/json"), 400).startswith(name)
    assert not PushSubscription.objects.exists()


def test_service_keys_cannot_subscribe(webpush_on, service_key):
    body = BrowserKeys().subscription("https://push.example.com/x")
    error_of(bearer(service_key).post(SUBS, body, content_type="application/json"), 403, "forbidden")


# --- escalation ------------------------------------------------------------------------


def test_an_unacknowledged_item_is_pushed_once_after_the_delay(webpush_on, user, push_service):
    sub, keys = subscribe(user, push_service, "alice")
    [item], _ = services.send(user, title="Build failed", body="main is red", kind="build.failed",
                              url="/builds/9", data={"run": 9})
    assert escalate().sent == 0 and push_service.received == []  # not due yet
    age(item)
    assert escalate().sent == 1
    [push] = push_service.to("alice")
    assert push.headers["content-encoding"] == "aes128gcm"
    assert push.headers["ttl"] == "86400"
    assert push.headers["authorization"].startswith("vapid t=")
    payload = keys.decrypt(push.body)
    assert payload["id"] == item.pk and payload["title"] == "Build failed"
    assert {k: payload[k] for k in ("body", "url", "kind", "level", "data", "read", "muted")} == {
        "body": "main is red", "url": "/builds/9", "kind": "build.failed", "level": "info",
        "data": {"run": 9}, "read": False, "muted": False}
    # Again: nothing more, however often the job runs.
    assert escalate().sent == 0
    assert len(push_service.to("alice")) == 1
    sub.refresh_from_db()
    assert sub.pushed_through == item.pk


def test_acknowledged_read_muted_and_no_push_items_are_never_pushed(webpush_on, user, push_service):
    _, keys = subscribe(user, push_service, "alice")
    set_prefs(user, {"muted": ["build.*"], "no_push": ["chat.*"]})
    acked = services.send(user, title="acked", kind="a")[0][0]
    read = services.send(user, title="read", kind="b")[0][0]
    muted = services.send(user, title="muted", kind="build.failed")[0][0]
    quiet = services.send(user, title="quiet", kind="chat.message")[0][0]
    pushed = services.send(user, title="pushed", kind="c")[0][0]
    assert muted.muted and not quiet.muted
    record_acks({(user.pk, "c:phone"): acked.pk})
    services.mark_read(user, [read.pk])
    age(acked, read, muted, quiet, pushed)
    escalate()
    assert [keys.decrypt(r.body)["title"] for r in push_service.to("alice")] == ["pushed"]


def test_the_pushed_payload_is_the_item_and_acks_cover_older_ids(webpush_on, user, push_service):
    _, keys = subscribe(user, push_service, "alice")
    first = services.send(user, title="first")[0][0]
    second = services.send(user, title="second")[0][0]
    third = services.send(user, title="third")[0][0]
    record_acks({(user.pk, "c:laptop"): second.pk})  # covers first and second
    age(first, second, third)
    escalate()
    assert [keys.decrypt(r.body)["title"] for r in push_service.to("alice")] == ["third"]


def test_an_announcement_reaches_each_subscription_once(webpush_on, make_user, push_service):
    users = [make_user(f"u{i}") for i in range(4)]
    group = Group.objects.create(name="ops")
    users[0].groups.add(group)
    subs = {u.username: subscribe(u, push_service, u.username) for u in users}
    subscribe(users[0], push_service, "u0-second-device")
    everyone = services.announce(title="Maintenance tonight")
    ops_only = services.announce(title="Ops drill", audience=group)
    record_acks({(users[1].pk, "c:x"): everyone.pk})  # u1 saw it live
    age(everyone, ops_only)
    assert escalate().sent == 2 * 2 + 0 + 1 + 1  # u0 has two devices; u1 acked
    seen = {name: [subs[name][1].decrypt(r.body)["title"] for r in push_service.to(name)] for name in subs}
    assert seen == {"u0": ["Maintenance tonight", "Ops drill"], "u1": [], "u2": ["Maintenance tonight"],
                    "u3": ["Maintenance tonight"]}
    assert len(push_service.to("u0-second-device")) == 2
    assert escalate().sent == 0


def test_a_410_answer_deletes_the_subscription(webpush_on, user, push_service):
    gone, _ = subscribe(user, push_service, "gone")
    kept, _ = subscribe(user, push_service, "kept")
    push_service.status["/push/gone"] = 410
    item = services.send(user, title="x")[0][0]
    age(item)
    result = escalate()
    assert (result.sent, result.gone) == (1, 1)
    assert list(PushSubscription.objects.values_list("pk", flat=True)) == [kept.pk]


def test_a_big_item_is_pushed_with_empty_data(webpush_on, user, push_service):
    _, keys = subscribe(user, push_service, "alice")
    item = services.send(user, title="big", body="b" * 1500, data={"blob": "x" * 2000})[0][0]
    age(item)
    escalate()
    payload = keys.decrypt(push_service.to("alice")[0].body)
    assert payload["id"] == item.pk and payload["data"] == {} and payload["body"] == "b" * 1500
    huge = {"id": 1, "title": "t", "body": "é" * 9000, "data": {"x": 1}}
    assert len(payload_for(huge)) <= MAX_PAYLOAD_BYTES


def test_a_stopped_pass_resumes_without_sending_twice(webpush_on, make_user, push_service, settings):
    settings.NOTIFY = {**webpush_on, "WEBPUSH_BATCH_SIZE": 5, "WEBPUSH_WORKERS": 2}
    users = [make_user(f"u{i}") for i in range(24)]
    for u in users:
        subscribe(u, push_service, u.username)
    announcement = services.announce(title="Release 2.0")
    age(announcement)
    first = Escalator(config())
    original = first._write

    def write_then_stop(answered, result):
        original(answered, result)
        if result.sent >= 7:
            first.stop.set()  # as SIGTERM would, in the middle of the batches

    first._write = write_then_stop
    try:
        first.run(once=True)
    finally:
        first.close()
    sent_before = {u.username for u in users if push_service.to(u.username)}
    assert 7 <= len(sent_before) < len(users)
    assert EscalationState.objects.get().horizon < announcement.pk  # the pass did not finish
    escalate()
    assert all(len(push_service.to(u.username)) == 1 for u in users)


# --- the command -----------------------------------------------------------------------


def manage(*args, env=None, **popen):
    return subprocess.Popen([sys.executable, "manage.py", "notify_escalate", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def push_env(**extra):
    return child_env(NOTIFY_WEBPUSH_VAPID_PRIVATE_KEY=VAPID_PRIVATE, NOTIFY_WEBPUSH_AFTER_SECONDS="0",
                     NOTIFY_WEBPUSH_ALLOW_INSECURE_ENDPOINTS="1", **extra)


def test_escalate_without_a_key_exits_0_at_once(transactional_db):
    env = child_env()
    env.pop("NOTIFY_WEBPUSH_VAPID_PRIVATE_KEY", None)
    out, _ = manage(env=env).communicate(timeout=60)
    assert "Web Push is off" in out


BAD_KEYS = ("not-a-key", "AAAA", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")


@pytest.mark.parametrize("command", [["manage.py", "notify_escalate", "--once"], ["manage.py", "check"],
                                     ["-m", "daphne", "-b", "127.0.0.1", "-p", "0", "config.asgi:application"]])
def test_a_bad_vapid_key_stops_the_command_naming_the_setting(transactional_db, command):
    for bad in BAD_KEYS:
        result = subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True, text=True,
                                env=child_env(NOTIFY_WEBPUSH_VAPID_PRIVATE_KEY=bad), timeout=60)
        assert result.returncode != 0
        assert "NOTIFY_WEBPUSH_VAPID_PRIVATE_KEY" in result.stderr


def test_escalate_runs_until_sigterm_and_exits_0(user, push_service):
    sub, keys = subscribe(user, push_service, "alice")
    proc = manage(env=push_env())
    try:
        item = services.send(user, title="while running")[0][0]
        deadline = time.monotonic() + 30
        while not push_service.to("alice") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert keys.decrypt(push_service.to("alice")[0].body)["id"] == item.pk
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0, out


def test_after_a_sigkill_a_restart_resends_nothing_that_was_answered(make_user, push_service):
    users = [make_user(f"k{i}") for i in range(40)]
    for u in users:
        subscribe(u, push_service, u.username)
    announcement = services.announce(title="Kill me softly")
    push_service.answer_first = 10
    push_service.hold.set()  # the 11th push on waits: the job has pushes in flight
    proc = manage(env=push_env())
    try:
        deadline = time.monotonic() + 30
        while len(push_service.received) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(push_service.received) == 10
        time.sleep(1.5)
    finally:
        proc.kill()
        proc.communicate(timeout=10)
    answered_first = {r.path for r in push_service.received}
    push_service.hold.clear()
    time.sleep(0.2)  # let the held handlers finish (their client is gone)
    before = len(push_service.received)
    out, _ = manage("--once", env=push_env()).communicate(timeout=60)
    second_run = push_service.received[before:]
    assert not answered_first & {r.path for r in second_run}, out
    for u in users:
        assert push_service.to(u.username), f"{u.username} never got {announcement.pk}"


def test_vapid_keys_in_base64url_and_both_pem_forms(settings):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from notify.webpush import load_vapid_key, public_key_of

    key = ec.generate_private_key(ec.SECP256R1())
    raw = key.private_numbers().private_value.to_bytes(32, "big")
    expected = public_key_of(load_vapid_key(base64.urlsafe_b64encode(raw).decode()))
    assert public_key_of(load_vapid_key(base64.urlsafe_b64encode(raw).decode().rstrip("="))) == expected
    for fmt in (serialization.PrivateFormat.TraditionalOpenSSL, serialization.PrivateFormat.PKCS8):
        pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()
        assert ("BEGIN EC PRIVATE KEY" in pem) == (fmt is serialization.PrivateFormat.TraditionalOpenSSL)
        assert public_key_of(load_vapid_key(pem)) == expected
    other_curve = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    with pytest.raises(ValueError):
        load_vapid_key(other_curve)
    settings.NOTIFY = {"WEBPUSH_VAPID_PRIVATE_KEY": VAPID_PRIVATE, "WEBPUSH_VAPID_SUBJECT": "ftp://x"}
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="WEBPUSH_VAPID_SUBJECT"):
        config()


def test_notify_webpush_keys_prints_a_usable_key(transactional_db):
    out = subprocess.run([sys.executable, "manage.py", "notify_webpush_keys"], cwd=ROOT, capture_output=True,
                         text=True, env=child_env(), timeout=60, check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("NOTIFY_WEBPUSH_VAPID_PRIVATE_KEY="))
    key = line.split("=", 1)[1]
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True,
                            env=child_env(NOTIFY_WEBPUSH_VAPID_PRIVATE_KEY=key), timeout=60)
    assert result.returncode == 0, result.stderr
