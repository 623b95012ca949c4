"""End to end: real daphne processes, a browser-like HTTP client (requests) and a real
WebSocket client library (websockets), docs/protocol.md §1, §2, §3 and §7.

Each test starts its own daphne on a free port sharing the test database
(``daphne_factory``). The Redis test starts two and sends from a third process.
"""

import asyncio
import json
import re

import pytest
import requests
from channels.db import database_sync_to_async
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from notify.api import send
from notify.models import Announcement, ApiToken, Notification

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-Secret-123"
TIMEOUT = 5
NOTIFICATION_KEYS = {"id", "kind", "title", "body", "level", "url", "data", "created_at", "read", "muted"}
CREATED_AT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def browser_login(server, path, username, next_url="/"):
    """Log in as a browser does: GET the form (CSRF cookie and token), POST it.

    Returns the ``requests.Session`` holding the session cookie.
    """
    session = requests.Session()
    page = session.get(f"{server.url}{path}", timeout=TIMEOUT)
    assert page.status_code == 200, page.text[:500]
    token = CSRF_FIELD.search(page.text)
    assert token, "no CSRF token in the login form"
    answer = session.post(
        f"{server.url}{path}",
        data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token.group(1), "next": next_url},
        headers={"Origin": server.url, "Referer": page.url},
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    assert answer.status_code == 302, answer.text[:500]
    assert "sessionid" in session.cookies
    return session


def post_admin_form(server, session, path, fields):
    """GET an admin add form for its CSRF token and POST ``fields`` to it, as the
    browser does when staff press Save. Returns the response (302 on success)."""
    page = session.get(f"{server.url}{path}", timeout=TIMEOUT)
    assert page.status_code == 200, page.text[:500]
    token = CSRF_FIELD.search(page.text).group(1)
    answer = session.post(
        f"{server.url}{path}",
        data={**fields, "csrfmiddlewaretoken": token, "_save": "Save"},
        headers={"Origin": server.url, "Referer": page.url},
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    assert answer.status_code == 302, f"admin form refused: {answer.status_code} {answer.text[-3000:]}"
    return answer


def cookie_header(session) -> str:
    return f"sessionid={session.cookies['sessionid']}"


async def receive(ws) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))


async def receive_nothing(ws, seconds=0.5) -> bool:
    try:
        frame = await asyncio.wait_for(ws.recv(), seconds)
    except TimeoutError:
        return True
    raise AssertionError(f"unexpected frame {frame}")


async def hello(ws) -> dict:
    frame = await receive(ws)
    assert frame["type"] == "hello"
    return frame


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def alice(make_user):
    return make_user("alice", password=PASSWORD)


@pytest.fixture
def staff(make_user):
    return make_user("admin", password=PASSWORD, is_staff=True, is_superuser=True)


async def test_a_notification_and_an_announcement_posted_in_the_admin_reach_the_browser_live(
    daphne_factory, alice, staff
):
    server = daphne_factory()
    browser = await asyncio.to_thread(browser_login, server, "/accounts/login/", "alice")
    async with connect(
        f"{server.ws_url}/ws/notify/",
        additional_headers={"Cookie": cookie_header(browser)},
        origin=server.url,
        subprotocols=["notify.v1"],
    ) as ws:
        assert ws.subprotocol == "notify.v1"
        assert await hello(ws) == {"type": "hello", "cursor": 0, "unread": 0, "heartbeat": 25}

        admin = await asyncio.to_thread(browser_login, server, "/admin/login/", "admin", "/admin/")
        await asyncio.to_thread(
            post_admin_form, server, admin, "/admin/notify/notification/add/",
            {"recipient": str(alice.pk), "kind": "comment.reply", "title": "Alice replied to your comment",
             "body": "Looks good to me.", "level": "info", "url": "/posts/7#c3", "data": '{"post": 7}',
             "dedupe_key": ""},
        )
        frame = await receive(ws)
        stored = await database_sync_to_async(Notification.objects.get)()
        assert set(frame) == {"type", "notification"} and frame["type"] == "notification"
        item = frame["notification"]
        assert set(item) == NOTIFICATION_KEYS
        assert CREATED_AT.fullmatch(item["created_at"])
        assert item == {
            "id": stored.pk, "kind": "comment.reply", "title": "Alice replied to your comment",
            "body": "Looks good to me.", "level": "info", "url": "/posts/7#c3", "data": {"post": 7},
            "created_at": item["created_at"], "read": False, "muted": False,
        }
        assert stored.recipient_id == alice.pk

        await asyncio.to_thread(
            post_admin_form, server, admin, "/admin/notify/announcement/add/",
            {"title": "Maintenance tonight", "body": "From 22:00 UTC.", "level": "warning", "url": "",
             "audience_group": "", "expires_at_0": "", "expires_at_1": ""},
        )
        frame = await receive(ws)
        announcement = await database_sync_to_async(Announcement.objects.get)()
        item = frame["notification"]
        assert set(item) == NOTIFICATION_KEYS and CREATED_AT.fullmatch(item["created_at"])
        assert item == {
            "id": announcement.pk, "kind": "announcement", "title": "Maintenance tonight",
            "body": "From 22:00 UTC.", "level": "warning", "url": "", "data": {},
            "created_at": item["created_at"], "read": False, "muted": False,
        }
        assert announcement.pk > stored.pk
        assert await receive_nothing(ws)


async def test_resume_with_since_gets_exactly_the_missed_items_in_order_once(daphne_factory, alice):
    server = daphne_factory()
    token = await database_sync_to_async(ApiToken.objects.issue)(user=alice)
    [before] = await database_sync_to_async(send)(alice, title="before")
    async with connect(f"{server.ws_url}/ws/notify/", additional_headers=bearer(token)) as ws:
        cursor = (await hello(ws))["cursor"]
    assert cursor == before.pk

    sent = []
    for i in range(5):
        sent += await database_sync_to_async(send)(alice, title=f"missed {i}")

    async with connect(f"{server.ws_url}/ws/notify/?since={cursor}", additional_headers=bearer(token)) as ws:
        greeting = await hello(ws)
        assert greeting["cursor"] == sent[-1].pk and greeting["unread"] == 6
        frames = [await receive(ws) for _ in range(5)]
        assert [f["notification"]["id"] for f in frames] == [n.pk for n in sent]
        assert [f["notification"]["title"] for f in frames] == [f"missed {i}" for i in range(5)]
        assert await receive_nothing(ws)

    # Resuming from the last one seen gives nothing more; from the middle, the rest.
    async with connect(f"{server.ws_url}/ws/notify/?since={sent[-1].pk}", additional_headers=bearer(token)) as ws:
        await hello(ws)
        assert await receive_nothing(ws, 0.3)
    async with connect(f"{server.ws_url}/ws/notify/?since={sent[2].pk}", additional_headers=bearer(token)) as ws:
        await hello(ws)
        assert [(await receive(ws))["notification"]["id"] for _ in range(2)] == [sent[3].pk, sent[4].pk]
        assert await receive_nothing(ws, 0.3)


async def test_refused_handshakes_get_http_403(daphne_factory, alice, service_key):
    server = daphne_factory()
    browser = await asyncio.to_thread(browser_login, server, "/accounts/login/", "alice")
    token = await database_sync_to_async(ApiToken.objects.issue)(user=alice)
    refused = [
        {"additional_headers": {"Cookie": cookie_header(browser)}, "origin": "https://evil.example"},
        {"additional_headers": {"Cookie": cookie_header(browser)}},
        {},
        {"additional_headers": bearer("ntk_not-a-token")},
        {"additional_headers": bearer(service_key)},
    ]
    for options in refused:
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"{server.ws_url}/ws/notify/", **options):
                pass
        assert info.value.response.status_code == 403, options
    # A Bearer token is accepted whatever the Origin.
    async with connect(f"{server.ws_url}/ws/notify/", additional_headers=bearer(token), origin="https://evil.example") as ws:
        await hello(ws)
    # Bad since: error frame, then close code 4400.
    async with connect(f"{server.ws_url}/ws/notify/?since=x", additional_headers=bearer(token)) as ws:
        frame = await receive(ws)
        assert frame["type"] == "error" and frame["code"] == "invalid_parameter"
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
        assert ws.close_code == 4400
    assert "refused" in server.logs() and "evil.example" in server.logs()


@pytest.mark.redis
async def test_two_daphne_processes_sharing_redis_get_a_send_from_a_third_process(
    daphne_factory, manage, redis_url, make_user
):
    alice, bob = await database_sync_to_async(make_user)("alice"), await database_sync_to_async(make_user)("bob")
    alice_token = await database_sync_to_async(ApiToken.objects.issue)(user=alice)
    bob_token = await database_sync_to_async(ApiToken.objects.issue)(user=bob)
    first, second = daphne_factory(redis_url=redis_url), daphne_factory(redis_url=redis_url)
    async with (
        connect(f"{first.ws_url}/ws/notify/", additional_headers=bearer(alice_token)) as alice_first,
        connect(f"{second.ws_url}/ws/notify/", additional_headers=bearer(alice_token)) as alice_second,
        connect(f"{second.ws_url}/ws/notify/", additional_headers=bearer(bob_token)) as bob_second,
    ):
        for ws in (alice_first, alice_second, bob_second):
            await hello(ws)
        result = await asyncio.to_thread(
            manage, "notify_send", "--to", "alice", "--to", "bob", "--title", "Across processes",
            redis_url=redis_url,
        )
        assert result.returncode == 0, result.stderr
        alice_id, bob_id = map(int, result.stdout.split())
        for ws in (alice_first, alice_second):
            frame = await receive(ws)
            assert frame["notification"]["id"] == alice_id
            assert frame["notification"]["title"] == "Across processes"
        assert (await receive(bob_second))["notification"]["id"] == bob_id
        for ws in (alice_first, alice_second, bob_second):
            assert await receive_nothing(ws, 0.3)

        result = await asyncio.to_thread(manage, "notify_announce", "--title", "Everyone", redis_url=redis_url)
        assert result.returncode == 0, result.stderr
        for ws in (alice_first, alice_second, bob_second):
            frame = await receive(ws)
            assert frame["notification"]["id"] == int(result.stdout.split()[-1])
            assert frame["notification"]["kind"] == "announcement"
