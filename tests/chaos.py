"""The chaos harness of tests/test_chaos.py (issue 9): resume chains, writers, faults.

Everything here speaks to the servers through the public interface only (docs/protocol.md §3,
§4, §4b, §5, §6, §7):

- ``Chain``: one client of one user that reconnects at random, each time over a random
  transport (WebSocket with ``websockets``, SSE and long-poll with ``requests``) to a
  random live process, resuming with the last id it saw (``since``, or SSE
  ``Last-Event-ID``). It records every id it receives, in order.
- ``Writers``: the HTTP send API (with some sends naming an unknown user, which are
  refused whole), the announce API, and ``manage.py notify_send`` / ``notify_announce``.
- ``python -m tests.chaos writer ...``: a process using the Python send API
  (``notify.api``) that rolls some sends back, so ids are used up and never committed.

Run as a module, it is that writer (see ``writer_main``).
"""

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import threading
import time
from collections import Counter

import requests
from websockets.asyncio.client import connect as aconnect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import connect

TRANSPORTS = ("ws", "sse", "poll")
# Seconds a connect or a quiet read may take before the session counts as broken
# (a killed or paused process).
IO_TIMEOUT = 5.0
# How long a session lasts before the client drops it and resumes elsewhere (seconds):
# mostly short, one in five long enough to outlive a Redis outage.
SESSION_SECONDS = (0.2, 3.0)
LONG_SESSION_SECONDS = (3.0, 9.0)
# What a killed or paused process does to a session (anything else is counted too, as
# "failed sessions", with an example).
BROKEN = (OSError, requests.RequestException, ConnectionClosed, InvalidHandshake, TimeoutError, ValueError)


class Stats:
    """Thread-safe named counters, plus a few examples of anomalies."""

    def __init__(self):
        self.counts: Counter = Counter()
        self.examples: list[str] = []
        self._lock = threading.Lock()

    def add(self, name: str, n: int = 1, example: str | None = None) -> None:
        with self._lock:
            self.counts[name] += n
            if example and len(self.examples) < 20:
                self.examples.append(f"{name}: {example}")


class Servers:
    """The daphne processes (``tests.conftest.DaphneProcess``) that clients and writers
    pick from at random; a killed one is out of the pick until it is back."""

    def __init__(self, servers):
        self.all = list(servers)
        self._up = set(range(len(self.all)))
        self._lock = threading.Lock()

    def pick(self, rng: random.Random):
        with self._lock:
            return self.all[rng.choice(sorted(self._up))]

    def kill(self, index: int) -> None:
        """SIGKILL process ``index`` (no clean shutdown: connections just break)."""
        with self._lock:
            self._up.discard(index)
        server = self.all[index]
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
        server.log.close()

    def restart(self, index: int) -> None:
        self.all[index].start()
        with self._lock:
            self._up.add(index)

    def pause(self, index: int, seconds: float) -> None:
        """SIGSTOP process ``index`` for ``seconds``: it stays in the pick, as a hung
        process would behind a load balancer."""
        pid = self.all[index].proc.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)


class Chain:
    """One client's resume chain (see bench/streamcheck.py).

    Args:
        label: a name for the report.
        username, token: the user and their API token.
        servers, stats: shared ``Servers`` and ``Stats``.
        seed: of this chain's random choices.
        since_zero: start with ``since=0`` (owed the whole stream); otherwise connect
            without ``since`` and be owed what follows the first ``hello`` cursor.
    Attributes:
        start: the position the chain is owed items after (None until known).
        cursor: the last id seen (what the next session resumes with).
        received: every item id received, in arrival order.
    """

    def __init__(self, label, username, token, servers, stats, seed, *, since_zero: bool):
        self.label = label
        self.username = username
        self.auth = {"Authorization": f"Bearer {token}"}
        self.servers = servers
        self.stats = stats
        self.rng = random.Random(seed)
        self.start = self.cursor = 0 if since_zero else None
        self.received: list[int] = []
        # (len(received) when it began, transport, port, since) of every session.
        self.sessions: list[tuple[int, str, int, int | None]] = []

    # The loop

    def run(self, stop: threading.Event) -> None:
        """Open sessions one after another until ``stop`` is set."""
        while not stop.is_set():
            transport = self.rng.choice(TRANSPORTS)
            length = LONG_SESSION_SECONDS if self.rng.random() < 0.2 else SESSION_SECONDS
            deadline = time.monotonic() + self.rng.uniform(*length)
            server = self.servers.pick(self.rng)
            self.sessions.append((len(self.received), transport, server.port, self.cursor))
            try:
                getattr(self, f"_{transport}")(server, deadline)
                self.stats.add(f"sessions {transport}")
            except BROKEN as exc:
                self.stats.add(f"broken sessions {transport}", example=f"{self.label} {exc!r}"[:160])
            except Exception as exc:  # noqa: BLE001 - e.g. a frame without an expected key
                self.stats.add("failed sessions", example=f"{self.label} {transport} {exc!r}"[:300])
            stop.wait(self.rng.uniform(0, 0.2))

    def caught_up(self, stream: list[int]) -> bool:
        """Whether the cursor reached the end of ``stream`` (ids, oldest first)."""
        if self.cursor is None:
            return False
        return not stream or self.cursor >= stream[-1]

    def explain(self, lost: int) -> str:
        """Describe how the cursor passed ``lost``: the first id received above it and
        the session (transport, port, since) that received it."""
        after = next((i for i, pk in enumerate(self.received) if pk > lost), None)
        if after is None:
            return "never passed"
        session = max((s for s in self.sessions if s[0] <= after), key=lambda s: s[0])
        return f"passed by {self.received[after]} in a {session[1]} session on :{session[2]} since={session[3]}"

    # What a session hands over

    def _frame(self, kind: str, first: bool, *, pk: int | None = None, cursor: int | None = None) -> None:
        if first and kind != "hello":
            self.stats.add("frames before hello", example=f"{self.label} got {kind} first")
        if kind == "hello" and self.cursor is None:
            self.start = self.cursor = cursor
        elif kind == "notification":
            self._take(pk)
        elif kind == "reset":
            self._reread(cursor)

    def _take(self, pk: int) -> None:
        self.received.append(pk)
        self.cursor = pk if self.cursor is None else max(self.cursor, pk)

    def _reread(self, upto: int) -> None:
        """After ``reset``: re-read the items up to ``upto`` with long-poll (the client
        "reloads its list"), then go on from ``upto``."""
        self.stats.add("resets")
        deadline = time.monotonic() + 30
        while self.cursor < upto and time.monotonic() < deadline:
            server = self.servers.pick(self.rng)
            try:
                answer = requests.get(f"{server.url}/notify/poll/", headers=self.auth, timeout=IO_TIMEOUT,
                                      params={"since": self.cursor, "timeout": 0, "limit": 100})
            except requests.RequestException:
                time.sleep(0.2)
                continue
            if answer.status_code != 200:
                self._status(answer.status_code, "poll (re-read)")
                time.sleep(0.2)
                continue
            items = [item["id"] for item in answer.json()["notifications"] if item["id"] <= upto]
            if not items:
                break
            for pk in items:
                self._take(pk)
        if self.cursor < upto:
            self.stats.add("re-reads cut short", example=f"{self.label} at {self.cursor} of {upto}")
        self.cursor = max(self.cursor, upto)

    def _status(self, status: int, what: str) -> None:
        self.stats.add(f"{what} HTTP {status}")
        if status >= 500:
            self.stats.add("server errors", example=f"{self.label} {what} {status}")

    # Transports

    def _ws(self, server, deadline: float) -> None:
        query = "" if self.cursor is None else f"?since={self.cursor}"
        with connect(f"{server.ws_url}/ws/notify/{query}", additional_headers=self.auth,
                     open_timeout=IO_TIMEOUT, close_timeout=1, max_size=2**22) as ws:
            first = True
            while (left := deadline - time.monotonic()) > 0:
                try:
                    frame = json.loads(ws.recv(timeout=left))
                except TimeoutError:
                    break
                kind = frame.get("type")
                item = frame.get("notification") or {}
                self._frame(kind, first, pk=item.get("id"), cursor=frame.get("cursor"))
                first = False
                if kind == "notification" and self.rng.random() < 0.15:
                    # Marking read sends `read` to every connection of the user, also
                    # to one that is just connecting (its first frame must stay hello).
                    ws.send(json.dumps({"type": "read", "ids": [item["id"]]}))

    def _sse(self, server, deadline: float) -> None:
        headers, params = dict(self.auth), {}
        if self.cursor is not None:
            if self.rng.random() < 0.5:
                headers["Last-Event-ID"] = str(self.cursor)  # what EventSource sends
            else:
                params["since"] = self.cursor
        with requests.get(f"{server.url}/notify/stream/", params=params, headers=headers, stream=True,
                          timeout=(IO_TIMEOUT, IO_TIMEOUT)) as answer:
            if answer.status_code != 200:
                return self._status(answer.status_code, "stream")
            fields: dict[str, str] = {}
            first = True
            # HEARTBEAT_SECONDS is 1 (tests/chaos_settings.py): a line comes at least
            # every second, so the deadline is checked often enough.
            for raw in answer.iter_lines(chunk_size=None):
                line = raw.decode()
                if not line:  # the blank line ends an event (HTML spec, server-sent events)
                    if "event" in fields:
                        data = json.loads(fields.get("data", "{}"))
                        kind = fields["event"]
                        if kind == "notification" and fields.get("id") != str(data["id"]):
                            self.stats.add("SSE id field mismatches", example=f"{self.label} {fields}")
                        self._frame(kind, first, pk=data.get("id"), cursor=data.get("cursor"))
                        first = False
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    fields[name] = f"{fields[name]}\n{value}" if name == "data" and name in fields else value
                if time.monotonic() >= deadline:
                    break

    def _poll(self, server, deadline: float) -> None:
        with requests.Session() as session:
            session.headers.update(self.auth)
            while (left := deadline - time.monotonic()) > 0:
                params = {"limit": self.rng.choice((3, 100))}
                if self.cursor is not None:
                    params.update(since=self.cursor, timeout=min(2, int(left)))
                answer = session.get(f"{server.url}/notify/poll/", params=params,
                                     timeout=params.get("timeout", 0) + IO_TIMEOUT)
                if answer.status_code != 200:
                    return self._status(answer.status_code, "poll")
                body = answer.json()
                if self.cursor is None:
                    self.start = self.cursor = body["cursor"]
                    continue
                items = [item["id"] for item in body["notifications"]]
                if items and body["cursor"] != items[-1]:
                    self.stats.add("poll cursor mismatches", example=f"{self.label} {body['cursor']} {items}")
                for pk in items:
                    self._take(pk)


class Crowd:
    """``per_server`` idle WebSocket connections of one user on every process, reopened
    when they drop, read and discarded. They make a process's resync after a layer
    outage take a while (its subscribers are re-read a few at a time), as in production.
    """

    def __init__(self, servers, token, per_server: int):
        self.servers = servers
        self.auth = {"Authorization": f"Bearer {token}"}
        self.per_server = per_server
        self.open = 0

    def run(self, stop: threading.Event) -> None:
        asyncio.run(self._run(stop))

    async def _run(self, stop: threading.Event) -> None:
        tasks = [asyncio.ensure_future(self._one(server, stop))
                 for server in self.servers.all for _ in range(self.per_server)]
        while not stop.is_set():
            await asyncio.sleep(0.2)
        await asyncio.wait(tasks, timeout=10)

    async def _one(self, server, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                async with aconnect(f"{server.ws_url}/ws/notify/", additional_headers=self.auth,
                                    open_timeout=IO_TIMEOUT, close_timeout=1) as ws:
                    self.open += 1
                    try:
                        while not stop.is_set():
                            try:
                                await asyncio.wait_for(ws.recv(), 1)
                            except TimeoutError:
                                pass
                    finally:
                        self.open -= 1
            except BROKEN:
                await asyncio.sleep(1)


class Writers:
    """Writers committing concurrently through the public interface; each method is
    a thread body that runs until ``stop`` is set and counts what it did in ``stats``."""

    def __init__(self, servers, service_key, usernames, group, stats, seed, manage, redis_url):
        self.servers = servers
        self.auth = {"Authorization": f"Bearer {service_key}"}
        self.usernames = usernames
        self.group = group
        self.stats = stats
        self.seed = seed
        self.manage = manage
        self.redis_url = redis_url

    def _post(self, path: str, payload: dict, rng: random.Random):
        server = self.servers.pick(rng)
        try:
            return requests.post(f"{server.url}/notify/api/{path}", json=payload, headers=self.auth,
                                 timeout=IO_TIMEOUT)
        except requests.RequestException:
            self.stats.add(f"writer {path} requests broken")  # a killed or paused process
            return None

    def http_send(self, stop: threading.Event) -> None:
        rng = random.Random(self.seed)
        for n in range(100_000):
            if stop.wait(rng.uniform(0.05, 0.25)):
                return
            recipients = rng.sample(self.usernames, rng.randint(1, 3))
            unknown = rng.random() < 0.1
            if unknown:
                # Refused whole: stores nothing for anyone (and, checked on PostgreSQL,
                # uses up no id: the recipients are resolved before the transaction).
                recipients.insert(rng.randrange(len(recipients) + 1), f"nobody{n}")
            answer = self._post("send/", {"recipients": recipients, "title": f"send {n}"}, rng)
            if answer is None:
                continue
            expected = 400 if unknown else 201
            if answer.status_code != expected:
                self.stats.add(f"writer send/ HTTP {answer.status_code}", example=answer.text[:200])
            elif unknown:
                self.stats.add("sends refused (unknown recipient)")
            else:
                self.stats.add("written: send/", len(answer.json()["ids"]))

    def http_announce(self, stop: threading.Event) -> None:
        rng = random.Random(self.seed + 1)
        for n in range(100_000):
            if stop.wait(rng.uniform(0.3, 0.9)):
                return
            payload = {"title": f"announce {n}"}
            if rng.random() < 0.3:
                payload["group"] = self.group
            answer = self._post("announce/", payload, rng)
            if answer is None:
                continue
            if answer.status_code != 201:
                self.stats.add(f"writer announce/ HTTP {answer.status_code}", example=answer.text[:200])
            else:
                self.stats.add("written: announce/")

    def commands(self, stop: threading.Event) -> None:
        """``manage.py notify_send`` and ``notify_announce``, one process at a time."""
        rng = random.Random(self.seed + 2)
        for n in range(10_000):
            if stop.wait(rng.uniform(0.5, 2.0)):
                return
            if n % 2:
                args = ["notify_announce", "--title", f"command announce {n}"]
                if rng.random() < 0.3:
                    args += ["--group", self.group]
            else:
                args = ["notify_send", "--title", f"command send {n}"]
                for name in rng.sample(self.usernames, rng.randint(1, 2)):
                    args += ["--to", name]
            done = self.manage(*args, redis_url=self.redis_url)
            if done.returncode:
                self.stats.add(f"writer {args[0]} failed", example=done.stderr[-300:])
            else:
                self.stats.add(f"written: {args[0]}", len(done.stdout.split()))


def writer_command(usernames: list[str], group: str, seconds: float, seed: int) -> list[str]:
    """The argv of the Python-API writer process (run from the repository root)."""
    return [sys.executable, "-m", "tests.chaos", "writer", "--users", ",".join(usernames), "--group", group,
            "--seconds", str(seconds), "--seed", str(seed)]


def writer_main(argv: list[str]) -> None:
    """A writer on the Python send API (docs/protocol.md §6) in its own process.

    Repeats, with short random pauses, for ``--seconds``: a ``send`` inside a transaction
    that is rolled back (its id is used up and never committed), then ``announce`` (to
    everyone or ``--group``) and a ``send`` to the same user (issue 9, loss path 1); or
    one transaction holding an announcement and a send to several users. Prints one JSON
    line of counts at the end.
    """
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import transaction

    from notify.api import announce, send

    class Rollback(Exception):
        pass

    rng = random.Random(args.seed)
    users = list(get_user_model().objects.filter(username__in=args.users.split(",")))
    group = Group.objects.get(name=args.group)
    counts: Counter = Counter()
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        user = rng.choice(users)
        audience = group if rng.random() < 0.3 else None
        try:
            if rng.random() < 0.7:
                try:
                    with transaction.atomic():
                        send(user, title="rolled back")
                        raise Rollback
                except Rollback:
                    counts["rolled back"] += 1
                announce(title="api announce", audience=audience)
                send(user, title="api send after announce")
                counts["written"] += 2
            else:
                with transaction.atomic():
                    announce(title="api announce in a transaction", audience=audience)
                    send(rng.sample(users, 3), title="api send in a transaction")
                counts["written"] += 4
        except Exception as exc:  # noqa: BLE001 - counted and reported by the test
            counts[f"error {type(exc).__name__}"] += 1
        time.sleep(rng.uniform(0.2, 0.7))
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] != ["writer"]:
        sys.exit("usage: python -m tests.chaos writer --users a,b --group NAME --seconds S [--seed N]")
    writer_main(sys.argv[2:])
