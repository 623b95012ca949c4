"""Concurrent senders on PostgreSQL: the cursor never skips a row that commits late.

Ids are allocated at INSERT, but transactions may commit in another order, so a reader
that saw id N could later find an id < N appear and a naive ``id > since`` would skip it.
The stream locks (``notify.locks.lock_streams``, see the ``Entry`` docstring) make a
later sender to the same stream wait for the earlier transaction, so ids become visible
in increasing order within every stream. These tests hold real transactions open in
other threads (each with its own database connection).
"""

import asyncio
import random
import threading
import time

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connection, transaction

from notify.api import announce, send
from notify.transports.websocket import NotificationConsumer
from notify.locks import lock_streams
from notify.selectors import read_stream

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def on_postgres(postgres, channel_layer):
    """Every test here needs PostgreSQL; pushes go through an in-memory layer."""


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def waiting_advisory_locks() -> int:
    """How many sessions of the test database wait for an advisory lock."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        return cursor.fetchone()[0]


def wait_for_waiters(count=1, timeout=5.0) -> bool:
    """Poll ``pg_locks`` until ``count`` sessions wait for an advisory lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if waiting_advisory_locks() >= count:
            return True
        time.sleep(0.01)
    return False


class Held:
    """Run ``fn`` inside ``transaction.atomic()`` in a thread and keep the transaction
    open until ``release()``; ``result`` is what ``fn`` returned."""

    def __init__(self, fn):
        self.fn = fn
        self.ready = threading.Event()
        self._release = threading.Event()
        self.result = self.error = None

    def body(self):
        try:
            with transaction.atomic():
                self.result = self.fn()
                self.ready.set()
                assert self._release.wait(20), "never released"
        except BaseException as exc:  # reported by the test
            self.error = exc
            self.ready.set()
        finally:
            connection.close()

    def release(self):
        self._release.set()


class Background(threading.Thread):
    """Run ``fn`` in a thread (its own connection); ``done`` is set when it returns."""

    def __init__(self, fn):
        super().__init__(daemon=True)
        self.fn = fn
        self.done = threading.Event()
        self.result = self.error = None

    def run(self):
        try:
            self.result = self.fn()
        except BaseException as exc:
            self.error = exc
        finally:
            connection.close()
            self.done.set()

    def outcome(self):
        assert self.done.wait(10), "did not finish"
        if self.error is not None:
            raise self.error
        return self.result


def as_user(app, user):
    async def wrapped(scope, receive, send):
        return await app({**scope, "user": user}, receive, send)

    return wrapped


async def open_socket(user, query=""):
    communicator = WebsocketCommunicator(as_user(NotificationConsumer.as_asgi(), user), f"/ws/notify/{query}")
    connected, _ = await communicator.connect(timeout=3)
    assert connected
    hello = await communicator.receive_json_from(timeout=3)
    assert hello["type"] == "hello"
    return communicator, hello


async def test_a_later_send_waits_for_an_open_one_and_no_client_skips_a_row(user):
    live, hello = await open_socket(user, "?since=0")
    assert hello["cursor"] == 0

    # Transaction 1 inserts "first" (its id is allocated) and stays open.
    first = Held(lambda: send(user, title="first")[0])
    first_task = asyncio.ensure_future(database_sync_to_async(first.body, thread_sensitive=False)())
    assert await database_sync_to_async(first.ready.wait, thread_sensitive=False)(10)
    assert first.error is None, first.error

    # Transaction 2 sends to the same user: it must wait for the stream lock.
    second_task = asyncio.ensure_future(
        database_sync_to_async(lambda: _closing(lambda: send(user, title="second")[0]), thread_sensitive=False)()
    )
    assert await database_sync_to_async(wait_for_waiters)(), "the later send did not wait for the stream lock"
    assert not second_task.done()

    # A client reading now sees neither row (nothing committed) and its cursor stays 0.
    reader, hello = await open_socket(user, "?since=0")
    assert hello["cursor"] == 0 and hello["unread"] == 0
    assert await reader.receive_nothing(timeout=0.2)
    assert await live.receive_nothing(timeout=0.1)

    first.release()
    await first_task
    second = await asyncio.wait_for(second_task, 10)
    assert first.error is None
    assert first.result.pk < second.pk, "ids must become visible in increasing order"

    # Live clients get both, in id order, once.
    for communicator in (live, reader):
        ids = [(await communicator.receive_json_from(timeout=3))["notification"]["id"] for _ in range(2)]
        assert ids == [first.result.pk, second.pk]
        assert await communicator.receive_nothing(timeout=0.2)
        await communicator.disconnect()

    # Resuming from the cursor it had, or from the first row, loses nothing.
    resumed, hello = await open_socket(user, "?since=0")
    assert hello["cursor"] == second.pk
    assert [(await resumed.receive_json_from(timeout=3))["notification"]["id"] for _ in range(2)] == [
        first.result.pk, second.pk
    ]
    await resumed.disconnect()
    resumed, _ = await open_socket(user, f"?since={first.result.pk}")
    assert (await resumed.receive_json_from(timeout=3))["notification"]["id"] == second.pk
    assert await resumed.receive_nothing(timeout=0.2)
    await resumed.disconnect()


def _closing(fn):
    try:
        return fn()
    finally:
        connection.close()


def test_an_announcement_waits_for_an_open_personal_send(user):
    first = Held(lambda: send(user, title="personal")[0])
    holder = Background(first.body)
    holder.start()
    assert first.ready.wait(10) and first.error is None
    announcer = Background(lambda: announce(title="everyone"))
    announcer.start()
    assert wait_for_waiters(), "the announcement did not wait for the open send"
    assert not announcer.done.is_set()
    assert read_stream(user, cursor=0, limit=10).items == []
    first.release()
    holder.outcome()
    announcement = announcer.outcome()
    assert first.result.pk < announcement.pk
    assert [i["id"] for i in read_stream(user, cursor=0, limit=10).items] == [first.result.pk, announcement.pk]


def test_a_personal_send_waits_for_an_open_announcement(user, other_user):
    held = Held(lambda: announce(title="everyone"))
    holder = Background(held.body)
    holder.start()
    assert held.ready.wait(10) and held.error is None
    sender = Background(lambda: send(other_user, title="personal")[0])
    sender.start()
    assert wait_for_waiters()
    assert not sender.done.is_set()
    held.release()
    holder.outcome()
    personal = sender.outcome()
    assert held.result.pk < personal.pk
    assert [i["id"] for i in read_stream(other_user, cursor=0, limit=10).items] == [held.result.pk, personal.pk]


def test_a_send_to_another_user_does_not_wait(user, other_user):
    held = Held(lambda: send(user, title="held")[0])
    holder = Background(held.body)
    holder.start()
    assert held.ready.wait(10) and held.error is None
    other = Background(lambda: send(other_user, title="free")[0])
    other.start()
    assert other.done.wait(5), "a send to another user waited for an unrelated stream"
    assert other.outcome().recipient_id == other_user.pk
    assert not holder.done.is_set()
    held.release()
    holder.outcome()


def test_lock_streams_serialises_one_users_stream_and_not_different_users(user, other_user):
    def hold(ids):
        return Held(lambda: lock_streams(ids))

    mine = hold([user.pk])
    holder = Background(mine.body)
    holder.start()
    assert mine.ready.wait(10) and mine.error is None

    def lock_and_commit(ids):
        with transaction.atomic():
            lock_streams(ids)
        return ids

    # Another user's stream is free.
    free = Background(lambda: lock_and_commit([other_user.pk]))
    free.start()
    assert free.done.wait(5) and free.error is None

    # The same user's stream (alone, with others, or as "all streams") waits.
    blocked = [Background(lambda ids=ids: lock_and_commit(ids)) for ids in ([user.pk], [other_user.pk, user.pk], None)]
    for thread in blocked:
        thread.start()
    assert wait_for_waiters(3)
    assert not any(thread.done.is_set() for thread in blocked)
    mine.release()
    holder.outcome()
    for thread in blocked:
        thread.outcome()


def test_lock_streams_needs_a_transaction(user):
    with pytest.raises(transaction.TransactionManagementError):
        lock_streams([user.pk])


def test_concurrent_senders_and_a_polling_reader_never_skip(make_user):
    users = [make_user(f"u{i}") for i in range(3)]
    reader_user = users[0]
    stop = threading.Event()
    seen: list[int] = []

    def sender(seed):
        rng = random.Random(seed)
        for i in range(12):
            with transaction.atomic():
                if rng.random() < 0.15:
                    announce(title=f"a{seed}.{i}")
                else:
                    send(rng.sample(users, rng.randint(1, 3)), title=f"n{seed}.{i}")
                if rng.random() < 0.5:
                    time.sleep(rng.random() / 100)  # commit late, sometimes
        return True

    def reader():
        cursor = 0
        while True:
            finished = stop.is_set()
            stream = read_stream(reader_user, cursor=cursor, limit=1000)
            for item in stream.items:
                seen.append(item["id"])
                cursor = item["id"]
            if finished:
                return cursor

    poll = Background(reader)
    poll.start()
    senders = [Background(lambda seed=seed: sender(seed)) for seed in range(6)]
    for thread in senders:
        thread.start()
    for thread in senders:
        assert thread.outcome()
    stop.set()
    poll.outcome()

    everything = [item["id"] for item in read_stream(reader_user, cursor=0, limit=10_000).items]
    assert len(everything) > 10
    assert seen == everything, "the polling reader skipped or repeated an id"
