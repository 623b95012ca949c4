#!/usr/bin/env python
"""Soak: many clients churning across transports for a long time (issue 9, item 5).

    pip install -r bench/requirements.txt              # aiohttp, once
    python bench/soak.py --clients 2000 --minutes 30   # the soak of docs/performance.md
    python bench/soak.py --clients 300 --minutes 3     # a short check that it works

One ``daphne config.asgi:application`` (``bench.settings``, pinned to ``--server-cpus``;
PostgreSQL ``--database-url``; the in-memory layer, or Redis with ``--layer redis``) and,
in this process (pinned to ``--gen-cpus``), N clients, one per user ``bench<i>``
(provisioned by bench/notify_provision.py). Each client is a resume chain (see
bench/streamcheck.py): it connects without ``since`` first (owed what follows that
hello's cursor), then drops its connection every ``--session-seconds`` (random in the
range) and resumes with the last id it saw over a random transport (WebSocket, SSE with
``Last-Event-ID``, or long-poll). Meanwhile the service API sends ``--sends-per-second``
personal notifications (each to ``--recipients`` random users) and one announcement
every ``--announce-every`` seconds.

Reported: the daphne process's RSS after ``--warmup-minutes`` and at the end of the
churn (growth must stay under 5 %), sampled every 10 s in the JSON; reconnects per
transport; and whether every client's stream was complete: after the sends stop and
every chain caught up (bounded), each client's received ids are compared with its
user's stream after its start, read with long-poll ``since``/``limit`` paging (lost,
duplicated, out of order). Prints a markdown table for docs/performance.md and writes
the raw results to bench/results/<time>-soak.json.
"""

import argparse
import asyncio
import functools
import json
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp
import requests

import run as R  # bench/run.py: the Notify target, /proc readers, provisioning
from streamcheck import Tally, read_stream

TRANSPORTS = ("ws", "sse", "poll")
IO_TIMEOUT = 30.0  # seconds a handshake or answer may take on a busy server


class Client:
    """One resume chain over aiohttp (``received``: ids in arrival order; ``start``:
    the position it is owed items after; ``cursor``: the last id seen)."""

    def __init__(self, index: int, token: str, base: str, rng: random.Random, stats: Counter):
        self.index = index
        self.auth = {"Authorization": f"Bearer {token}"}
        self.base = base
        self.rng = rng
        self.stats = stats
        self.start = self.cursor = None
        self.received: list[int] = []

    async def run(self, http, stop: asyncio.Event, session_seconds: tuple[float, float]) -> None:
        # Spread the first connections over the first session length.
        await asyncio.sleep(self.rng.uniform(0, session_seconds[0]))
        while not stop.is_set():
            transport = "ws" if self.cursor is None and self.index % 3 == 0 else self.rng.choice(TRANSPORTS)
            deadline = time.monotonic() + self.rng.uniform(*session_seconds)
            try:
                await getattr(self, f"_{transport}")(http, deadline)
                self.stats[f"sessions {transport}"] += 1
            except (OSError, aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError) as exc:
                self.stats[f"broken {transport}: {type(exc).__name__}"] += 1
                await asyncio.sleep(1)

    def caught_up(self, latest: int) -> bool:
        return self.cursor is not None and self.cursor >= latest

    def _take(self, pk: int) -> None:
        self.received.append(pk)
        self.cursor = pk if self.cursor is None else max(self.cursor, pk)

    def _hello(self, cursor: int) -> None:
        if self.cursor is None:
            self.start = self.cursor = cursor

    async def _reread(self, http, upto: int) -> None:
        """After ``reset``: re-read up to ``upto`` with long-poll, then go on from it."""
        self.stats["resets"] += 1
        while self.cursor < upto:
            async with http.get(f"{self.base}/notify/poll/", headers=self.auth,
                                params={"since": self.cursor, "timeout": 0, "limit": 500}) as answer:
                if answer.status != 200:
                    self.stats[f"poll HTTP {answer.status}"] += 1
                    return
                items = [i["id"] for i in (await answer.json())["notifications"] if i["id"] <= upto]
            if not items:
                break
            for pk in items:
                self._take(pk)
        self.cursor = max(self.cursor, upto)

    async def _ws(self, http, deadline: float) -> None:
        query = "" if self.cursor is None else f"?since={self.cursor}"
        async with http.ws_connect(f"{self.base.replace('http', 'ws', 1)}/ws/notify/{query}", headers=self.auth,
                                   timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5),
                                   max_msg_size=1 << 22) as ws:
            while (left := deadline - time.monotonic()) > 0:
                try:
                    message = await ws.receive(timeout=left)
                except asyncio.TimeoutError:
                    break
                if message.type != aiohttp.WSMsgType.TEXT:
                    self.stats["ws closed by server"] += 1
                    break
                frame = json.loads(message.data)
                kind = frame["type"]
                if kind == "hello":
                    self._hello(frame["cursor"])
                elif kind == "notification":
                    self._take(frame["notification"]["id"])
                elif kind == "reset":
                    await self._reread(http, frame["cursor"])

    async def _sse(self, http, deadline: float) -> None:
        headers = dict(self.auth)
        if self.cursor is not None:
            headers["Last-Event-ID"] = str(self.cursor)
        async with http.get(f"{self.base}/notify/stream/", headers=headers) as answer:
            if answer.status != 200:
                self.stats[f"stream HTTP {answer.status}"] += 1
                return
            fields: dict[str, str] = {}
            while (left := deadline - time.monotonic()) > 0:
                try:
                    raw = await asyncio.wait_for(answer.content.readline(), left)
                except asyncio.TimeoutError:
                    break
                if not raw:
                    self.stats["sse ended by server"] += 1
                    break
                line = raw.decode().rstrip("\n")
                if not line:
                    kind, data = fields.get("event"), json.loads(fields.get("data", "{}"))
                    if kind == "hello":
                        self._hello(data["cursor"])
                    elif kind == "notification":
                        self._take(data["id"])
                    elif kind == "reset":
                        await self._reread(http, data["cursor"])
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    fields[name] = value[1:] if value.startswith(" ") else value

    async def _poll(self, http, deadline: float) -> None:
        while (left := deadline - time.monotonic()) > 0:
            params = {"limit": 100}
            if self.cursor is not None:
                params.update(since=self.cursor, timeout=max(0, min(25, int(left))))
            async with http.get(f"{self.base}/notify/poll/", headers=self.auth, params=params) as answer:
                if answer.status != 200:
                    self.stats[f"poll HTTP {answer.status}"] += 1
                    return
                body = await answer.json()
            if self.cursor is None:
                self._hello(body["cursor"])
                continue
            for item in body["notifications"]:
                self._take(item["id"])


def read_stream_patiently(base: str, token: str, since: int, attempts: int = 5) -> list[dict]:
    """``read_stream``, tried again (after 2 s) when the busy server answers late or 5xx."""
    for attempt in range(attempts):
        try:
            return read_stream(base, token, since=since, timeout=IO_TIMEOUT)
        except requests.RequestException:
            if attempt == attempts - 1:
                raise
            time.sleep(2)


async def sender(http, base: str, key: str, users: int, args, stop: asyncio.Event, stats: Counter) -> None:
    """Personal sends at ``--sends-per-second`` and an announcement every
    ``--announce-every`` seconds, on a fixed schedule, until ``stop``."""
    rng = random.Random(args.seed)
    auth = {"Authorization": f"Bearer {key}"}
    period = 1.0 / args.sends_per_second
    t0 = time.monotonic()
    next_announce = args.announce_every
    pending: set[asyncio.Task] = set()

    async def post(path, payload, what, count):
        try:
            async with http.post(f"{base}/notify/api/{path}", json=payload, headers=auth) as answer:
                if answer.status == 201:
                    stats[f"sent {what}"] += count
                else:
                    stats[f"{path} HTTP {answer.status}"] += 1
        except (OSError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            stats[f"{path} {type(exc).__name__}"] += 1

    for n in range(10**9):
        at = t0 + n * period
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        if stop.is_set():
            break
        recipients = [f"bench{i}" for i in rng.sample(range(users), min(args.recipients, users))]
        pending.add(asyncio.ensure_future(post("send/", {"recipients": recipients, "title": f"soak {n}"},
                                               "personal", len(recipients))))
        if at - t0 >= next_announce:
            next_announce += args.announce_every
            pending.add(asyncio.ensure_future(post("announce/", {"title": f"soak announcement {n}"},
                                                   "announcements", 1)))
        pending = {task for task in pending if not task.done()}
    if pending:
        await asyncio.wait(pending, timeout=IO_TIMEOUT)


async def soak(args, target, tokens: list[str], res: dict) -> tuple[list[Client], dict[int, list[int]]]:
    """Run the churn; return the clients and, per client index, its user's stream
    (ids) after its start, read once the sends have stopped."""
    base = f"http://127.0.0.1:{target.port}"
    stats: Counter = Counter()
    res["stats"] = stats
    rng = random.Random(args.seed)
    clients = [Client(i, tokens[i], base, random.Random(rng.random()), stats) for i in range(args.clients)]
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=IO_TIMEOUT, sock_read=60)
    stop_clients, stop_sends = asyncio.Event(), asyncio.Event()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        tasks = [asyncio.ensure_future(c.run(http, stop_clients, args.session_seconds)) for c in clients]
        sends = asyncio.ensure_future(sender(http, base, target.service_key, args.clients, args, stop_sends, stats))
        try:
            return clients, await churn(args, target, res, clients, tokens, stats, stop_sends, sends)
        finally:
            stop_sends.set()
            stop_clients.set()
            await asyncio.wait([*tasks, sends], timeout=args.session_seconds[1] + IO_TIMEOUT + 10)
            for task in [*tasks, sends]:
                task.cancel()


async def churn(args, target, res, clients, tokens, stats, stop_sends, sends) -> dict[int, list[int]]:
    """Sample RSS while the clients churn and the sends go on; then stop the sends,
    read every client's stream and wait (bounded) until every chain has caught up."""
    pid = target.proc.pid
    base = f"http://127.0.0.1:{target.port}"
    duration, warmup = args.minutes * 60, args.warmup_minutes * 60
    samples = res["rss_samples"] = []
    t0 = time.monotonic()
    cpu0 = R.cpu_seconds(pid)
    while (elapsed := time.monotonic() - t0) < duration:
        await asyncio.sleep(min(10.0, duration - elapsed))
        elapsed = time.monotonic() - t0
        samples.append({"s": round(elapsed), "rss_kib": R.rss_kib(pid), "threads": R.proc_status(pid, "Threads"),
                        "sessions": sum(v for k, v in stats.items() if k.startswith("sessions"))})
        if "rss_warm_kib" not in res and elapsed >= warmup:
            res["rss_warm_kib"], res["warm_at_s"] = samples[-1]["rss_kib"], samples[-1]["s"]
        R.log(f"soak {samples[-1]}")
    res["rss_end_kib"], res["churn_sessions"] = samples[-1]["rss_kib"], dict(stats)
    res["server_cpu_s"] = round(R.cpu_seconds(pid) - cpu0, 1)
    stop_sends.set()
    await sends  # every send/ and announce/ request answered (bounded)
    # Every chain catches up (bounded): they go on reconnecting and resume.
    loop = asyncio.get_running_loop()
    started = [c for c in clients if c.start is not None]
    reads = await asyncio.gather(*(  # on the default executor's few threads
        loop.run_in_executor(None, functools.partial(read_stream_patiently, base, tokens[c.index], c.start))
        for c in started))
    streams = {c.index: [item["id"] for item in items] for c, items in zip(started, reads)}
    deadline = time.monotonic() + args.catch_up
    while time.monotonic() < deadline and not all(
        c.index in streams and c.caught_up(streams[c.index][-1] if streams[c.index] else c.start) for c in clients
    ):
        await asyncio.sleep(0.5)
    res["caught_up_s"] = round(args.catch_up - (deadline - time.monotonic()), 1)
    return streams


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=2000, help="clients, one user each")
    p.add_argument("--minutes", type=float, default=30, help="length of the churn")
    p.add_argument("--warmup-minutes", type=float, help="RSS baseline after this (default: a sixth of "
                   "--minutes, at most 5)")
    p.add_argument("--session-seconds", default="5,15", help="min,max seconds a connection lives")
    p.add_argument("--sends-per-second", type=float, default=10, help="send/ requests a second")
    p.add_argument("--recipients", type=int, default=5, help="users per send/ request")
    p.add_argument("--announce-every", type=float, default=10, help="seconds between announcements")
    p.add_argument("--catch-up", type=float, default=60, help="max seconds for every chain to catch up at the end")
    p.add_argument("--layer", default="memory", choices=["memory", "redis"])
    p.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"))
    p.add_argument("--database-url",
                   default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/notify_bench"))
    p.add_argument("--server-cpus", default="0")
    p.add_argument("--gen-cpus", default="1")
    p.add_argument("--port", type=int, default=8500)
    p.add_argument("--seed", type=int, default=9)
    p.add_argument("--out", help="JSON results file (default bench/results/<time>-soak.json)")
    args = p.parse_args()
    args.session_seconds = tuple(float(x) for x in args.session_seconds.split(","))
    if args.warmup_minutes is None:
        args.warmup_minutes = min(5.0, args.minutes / 6)
    R.raise_nofile()
    try:
        os.sched_setaffinity(0, {int(c) for c in args.gen_cpus.split(",")})
    except (AttributeError, OSError, ValueError):
        pass
    # What bench/run.py's Notify target reads from its arguments.
    args.notify_database_url, args.scenario, args.notify_trigger = args.database_url, "soak", "api"
    target = R.Notify(args, args.port)
    started = time.strftime("%Y%m%d-%H%M%S")
    res = {"args": {k: v for k, v in vars(args).items()}, "machine": R.machine_info(), "ok": False}
    out = Path(args.out) if args.out else R.RESULTS / f"{started}-soak.json"
    tally = Tally()
    try:
        target.prepare(args.clients)
        tokens = [x.strip() for x in target.tokens.read_text().splitlines() if x.strip()]
        target.start()
        res["rss_idle_kib"] = R.rss_kib(target.proc.pid)
        clients, streams = asyncio.run(soak(args, target, tokens, res))
        res["never_connected"] = sum(c.index not in streams for c in clients)
        for c in clients:
            if c.index in streams:
                tally.add(f"bench{c.index}", c.received, streams[c.index], c.start)
        res["ok"] = True
    except (R.NotReady, RuntimeError, OSError, requests.RequestException) as exc:
        res["error"] = f"{type(exc).__name__}: {exc}"
        R.log(f"soak: ERROR {res['error']}")
    finally:
        target.stop()
    res["tally"] = {k: v for k, v in vars(tally).items() if k != "faults"}
    res["faults"] = tally.faults[:100]
    stats = res.get("stats", Counter())
    R.RESULTS.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=str))

    warm, end = res.get("rss_warm_kib"), res.get("rss_end_kib")
    growth = f"{(end - warm) / warm * 100:+.1f} %" if warm and end else "–"
    churn = res.get("churn_sessions", {})  # counted until the sends stop
    sessions = {t: churn.get(f"sessions {t}", 0) for t in TRANSPORTS}
    broken = sum(v for k, v in stats.items() if k.startswith("broken"))
    m = res["machine"]
    print(f"\nsoak: {args.clients:,} clients for {args.minutes:g} min, sessions of {args.session_seconds[0]:g}-"
          f"{args.session_seconds[1]:g} s, {args.sends_per_second:g} send/ a second x {args.recipients} recipients, "
          f"an announcement every {args.announce_every:g} s; daphne on cpu {args.server_cpus}, clients on cpu "
          f"{args.gen_cpus}; layer {args.layer}; {m['cpus']} x {m['cpu_model']}, Python {m['python']}\n")
    print("| clients | minutes | sessions during the churn (ws / sse / poll) | broken sessions | items sent (personal / announcements) "
          "| expected deliveries | lost | duplicated | out of order | RSS idle / after warm-up / end (MiB) "
          "| RSS growth | server CPU (s) |")
    print("|" + "---|" * 12)
    mib = lambda k: f"{k / 1024:.0f}" if k else "–"  # noqa: E731
    print(f"| {args.clients:,} | {args.minutes:g} | {sum(sessions.values()):,} ({sessions['ws']:,} / {sessions['sse']:,} / "
          f"{sessions['poll']:,}) | {broken:,} | {stats.get('sent personal', 0):,} / {stats.get('sent announcements', 0):,} "
          f"| {tally.expected:,} | {tally.lost:,} | {tally.duplicated:,} | {tally.out_of_order:,} "
          f"| {mib(res.get('rss_idle_kib'))} / {mib(warm)} / {mib(end)} | {growth} | {res.get('server_cpu_s', '–')} |")
    other = {k: v for k, v in stats.items() if not k.startswith(("sessions", "sent"))}
    if other or res.get("error") or tally.unexpected or res.get("never_connected"):
        print(f"\nother: {other} unexpected {tally.unexpected} error {res.get('error')} "
              f"never connected {res.get('never_connected')}")
    print(f"\nraw results: {out}")
    sys.exit(0 if res["ok"] and tally.clean else 1)


if __name__ == "__main__":
    main()
