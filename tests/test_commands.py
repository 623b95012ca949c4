"""The management commands notify_send, notify_announce and notify_token (docs/protocol.md §7).

Most tests run the command as ``manage.py`` would, in this process
(``execute_from_command_line``: real argument parsing, exit status and stderr); one per
command runs it as a separate process to show the real exit code.
"""

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Group
from django.core.management import execute_from_command_line

from config.asgi import application
from notify.models import Announcement, ApiToken, Entry, Notification
from notify.selectors import read_stream
from notify.services import authenticate_token

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def run(capsys, channel_layer):
    """``run(*argv) -> (exit status, stdout lines, stderr)`` of ``manage.py *argv``."""

    def call(*argv):
        capsys.readouterr()
        try:
            execute_from_command_line(["manage.py", *argv])
            status = 0
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return status, out.splitlines(), err

    return call


# notify_send


def test_notify_send_stores_and_prints_one_id_per_recipient(run, user, other_user):
    status, out, err = run(
        "notify_send", "--to", "alice", "--to", "bob", "--title", "Deploy done", "--body", "v2 is live",
        "--kind", "deploy.done", "--level", "success", "--url", "/deploys/9",
    )
    assert status == 0, err
    stored = list(Notification.objects.order_by("id"))
    assert out == [str(n.pk) for n in stored]
    assert [n.recipient for n in stored] == [user, other_user]
    assert [(n.title, n.body, n.kind, n.level, n.url, n.data) for n in stored] == [
        ("Deploy done", "v2 is live", "deploy.done", "success", "/deploys/9", {})
    ] * 2


def test_notify_send_defaults(run, user):
    status, out, _ = run("notify_send", "--to", "alice", "--title", "Hi")
    assert status == 0
    n = Notification.objects.get(pk=int(out[0]))
    assert (n.body, n.kind, n.level, n.url) == ("", "message", "info", "")


def test_notify_send_to_the_same_user_twice_stores_one(run, user):
    status, out, _ = run("notify_send", "--to", "alice", "--to", "alice", "--title", "Hi")
    assert status == 0 and len(out) == 1
    assert Notification.objects.count() == 1


def test_notify_send_names_users_by_username_even_when_numeric(run, make_user):
    decoy = make_user("decoy")
    numeric = make_user(str(decoy.pk))  # its username is the other user's id
    status, out, _ = run("notify_send", "--to", str(decoy.pk), "--title", "Hi")
    assert status == 0
    assert Notification.objects.get(pk=int(out[0])).recipient == numeric


@pytest.mark.parametrize(
    "args, reason",
    [
        (["--to", "alice", "--to", "ghost", "--title", "Hi"], "ghost"),
        (["--to", "alice", "--title", "Hi", "--level", "loud"], "level"),
        (["--to", "alice", "--title", "Hi", "--kind", "Not A Slug"], "kind"),
        (["--to", "alice", "--title", "Hi", "--url", "javascript:alert(1)"], "url"),
        (["--to", "alice", "--title", ""], "title"),
        (["--to", "alice", "--title", "   "], "title"),
        (["--to", "alice"], "title"),
        (["--title", "Hi"], "to"),
    ],
)
def test_notify_send_bad_arguments_exit_non_zero_with_the_reason_and_store_nothing(run, user, args, reason):
    status, out, err = run("notify_send", *args)
    assert status != 0
    assert reason in err
    assert out == []
    assert Entry.objects.count() == 0


def test_notify_send_as_a_separate_process(manage, user):
    result = manage("notify_send", "--to", "alice", "--title", "From a shell")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(Notification.objects.get().pk)]
    result = manage("notify_send", "--to", "nobody", "--title", "x")
    assert result.returncode != 0
    assert "nobody" in result.stderr
    assert Notification.objects.count() == 1


async def test_notify_send_pushes_live(user, channel_layer):
    token = await database_sync_to_async(ApiToken.objects.issue)(user=user)
    communicator = WebsocketCommunicator(application, "/ws/notify/", headers=[(b"authorization", f"Bearer {token}".encode())])
    assert (await communicator.connect(timeout=3))[0]
    assert (await communicator.receive_json_from(timeout=3))["type"] == "hello"
    await database_sync_to_async(execute_from_command_line)(["manage.py", "notify_send", "--to", "alice", "--title", "Live"])
    frame = await communicator.receive_json_from(timeout=3)
    assert frame["notification"]["title"] == "Live"
    await communicator.disconnect()


# notify_announce


def test_notify_announce_prints_the_stream_id(run, user):
    status, out, err = run("notify_announce", "--title", "Maintenance", "--body", "at 22:00", "--level", "warning")
    assert status == 0, err
    announcement = Announcement.objects.get()
    assert out == [str(announcement.pk)]
    assert (announcement.title, announcement.body, announcement.level, announcement.kind) == (
        "Maintenance", "at 22:00", "warning", "announcement"
    )
    assert [item["id"] for item in read_stream(user, cursor=0, limit=10).items] == [announcement.pk]


def test_notify_announce_to_a_group(run, user, other_user):
    group = Group.objects.create(name="beta")
    group.user_set.add(other_user)
    status, out, _ = run("notify_announce", "--title", "Beta", "--group", "beta")
    assert status == 0
    assert Announcement.objects.get().audience_group == group
    assert read_stream(user, cursor=0, limit=10).items == []
    assert [item["id"] for item in read_stream(other_user, cursor=0, limit=10).items] == [int(out[0])]


def test_notify_announce_with_expiry(run, user):
    status, out, _ = run("notify_announce", "--title", "Sale", "--expires-at", "2999-01-01T00:00:00Z")
    assert status == 0
    assert Announcement.objects.get(pk=int(out[0])).expires_at.year == 2999


@pytest.mark.parametrize(
    "args, reason",
    [
        (["--title", "Hi", "--group", "nosuchgroup"], "nosuchgroup"),
        (["--title", "Hi", "--level", "loud"], "level"),
        (["--title", ""], "title"),
        (["--body", "no title"], "title"),
        (["--title", "Hi", "--expires-at", "tomorrow"], "expires_at"),
        (["--title", "Hi", "--expires-at", "2000-01-01T00:00:00Z"], "expires_at"),
        (["--title", "Hi", "--expires-at", "2999-01-01T00:00:00"], "expires_at"),
    ],
)
def test_notify_announce_bad_arguments_exit_non_zero_with_the_reason_and_store_nothing(run, user, args, reason):
    status, out, err = run("notify_announce", *args)
    assert status != 0
    assert reason in err
    assert out == []
    assert Entry.objects.count() == 0


def test_notify_announce_as_a_separate_process(manage, user):
    result = manage("notify_announce", "--title", "Hello")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(Announcement.objects.get().pk)]
    result = manage("notify_announce", "--title", "Hello", "--level", "shout")
    assert result.returncode != 0 and "level" in result.stderr
    assert Announcement.objects.count() == 1


# notify_token


def test_notify_token_prints_a_personal_token_as_its_last_line(run, user):
    status, out, err = run("notify_token", "alice")
    assert status == 0, err
    token = authenticate_token(out[-1])
    assert token is not None and token.user == user and not token.is_service
    # Stored hashed: the raw value is nowhere in the table.
    assert not ApiToken.objects.filter(digest=out[-1]).exists()
    assert out[-1] not in ApiToken.objects.values_list("digest", "hint", "name").get()


def test_notify_token_service_prints_a_service_key(run, transactional_db):
    status, out, _ = run("notify_token", "--service", "billing")
    assert status == 0
    key = authenticate_token(out[-1])
    assert key is not None and key.is_service and key.name == "billing" and key.user is None


def test_each_token_is_new(run, user):
    first = run("notify_token", "alice")[1][-1]
    second = run("notify_token", "alice")[1][-1]
    assert first != second
    assert ApiToken.objects.count() == 2


def test_notify_token_revoke(run, user):
    raw = run("notify_token", "alice")[1][-1]
    status, out, _ = run("notify_token", "--revoke", raw)
    assert (status, out) == (0, ["revoked"])
    assert authenticate_token(raw) is None
    assert ApiToken.objects.get().revoked_at is not None
    status, out, err = run("notify_token", "--revoke", raw)
    assert status != 0 and "revoke" in err


def test_notify_token_revokes_a_service_key(run, service_key):
    status, out, _ = run("notify_token", "--revoke", service_key)
    assert (status, out) == (0, ["revoked"])
    assert authenticate_token(service_key) is None


@pytest.mark.parametrize(
    "args, reason",
    [
        (["ghost"], "ghost"),
        ([], "USERNAME"),
        (["alice", "--service", "billing"], "USERNAME"),
        (["--service", "  "], "service"),
        (["--revoke", "ntk_nosuchtoken"], "revoke"),
    ],
)
def test_notify_token_bad_arguments_exit_non_zero_and_store_nothing(run, user, args, reason):
    status, out, err = run("notify_token", *args)
    assert status != 0
    assert reason in err
    assert ApiToken.objects.count() == 0


def test_notify_token_refuses_an_inactive_user(run, make_user):
    make_user("gone", is_active=False)
    status, _, err = run("notify_token", "gone")
    assert status != 0 and "inactive" in err
    assert ApiToken.objects.count() == 0


def test_notify_token_as_a_separate_process(manage, user):
    result = manage("notify_token", "alice")
    assert result.returncode == 0, result.stderr
    raw = result.stdout.splitlines()[-1]
    assert authenticate_token(raw).user == user
    result = manage("notify_token", "--revoke", raw)
    assert (result.returncode, result.stdout.strip()) == (0, "revoked")
    assert authenticate_token(raw) is None


async def test_revoking_with_the_command_closes_the_connections_the_token_opened(user, channel_layer):
    raw = await database_sync_to_async(ApiToken.objects.issue)(user=user)
    communicator = WebsocketCommunicator(application, "/ws/notify/", headers=[(b"authorization", f"Bearer {raw}".encode())])
    assert (await communicator.connect(timeout=3))[0]
    assert (await communicator.receive_json_from(timeout=3))["type"] == "hello"
    await database_sync_to_async(execute_from_command_line)(["manage.py", "notify_token", "--revoke", raw])
    message = await communicator.receive_output(timeout=3)
    assert message["type"] == "websocket.close"
