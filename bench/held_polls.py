"""Hold many long-polls on one daphne process and release them with one send.

    . .venv/bin/activate && pip install -r bench/requirements.txt
    python bench/held_polls.py                 # 500 held polls
    python bench/held_polls.py --polls 5000    # 5,000

Starts one ``daphne config.asgi:application`` (pinned to CPU 0 with ``taskset`` where
available) on a fresh SQLite database in a temporary folder (or ``--database-url``),
provisions ``--users`` users with API tokens and a service key, holds ``--polls``
``GET /notify/poll/?since=<cursor>&timeout=55`` requests at once (aiohttp), then sends
one notification to every user through ``POST /notify/api/send/`` and measures, per
poll, the time from just before the send to its complete answer. Reports the release
time (p50, p90, max), and the server's thread count (``Threads`` in
``/proc/PID/status``) and RSS idle, while the polls are held, and after the release.
Prints one JSON object last.

``REDIS_URL`` in the environment is passed on (the channel-layer path between
processes); without it daphne uses the in-memory layer, and the send, made by the
same process through the service API, still crosses the channel layer to the hub.
"""

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
POLL_TIMEOUT = 55  # seconds: the largest timeout the contract allows


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_status(pid: int) -> dict:
    """Return ``{"threads": int, "rss_mib": float}`` of a process from /proc."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        values[name] = value.strip()
    return {"threads": int(values["Threads"]), "rss_mib": round(int(values["VmRSS"].split()[0]) / 1024, 1)}


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def established(port: int) -> int:
    """Count established TCP connections to ``port`` on the server side (/proc/net/tcp)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] == "01" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def provision(env: dict, users: int) -> dict:
    """Migrate, then create users, their tokens and a service key (in a child process)."""
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    script = f"""
import json, django
django.setup()
from django.contrib.auth import get_user_model
from notify.models import ApiToken
User = get_user_model()
tokens = []
for i in range({users}):
    user, _ = User.objects.get_or_create(username=f"poller{{i}}")
    tokens.append(ApiToken.objects.issue(user=user, name="bench"))
print(json.dumps({{"tokens": tokens, "service": ApiToken.objects.issue(name="bench", service=True),
                  "usernames": [f"poller{{i}}" for i in range({users})]}}))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def start_daphne(env: dict, port: int, log) -> subprocess.Popen:
    command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"]
    if shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]  # taskset execs: the pid is daphne's
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("daphne exited early; see its log")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.1)
    raise SystemExit("daphne did not listen within 30 s")


async def wait_idle(pid: int, port: int, polls: int, limit: float) -> float:
    """Wait until ``polls`` connections are established and the server's CPU time has
    stopped moving (every poll read its backlog and waits); return the seconds taken."""
    started = time.monotonic()
    quiet_since, last = None, cpu_ticks(pid)
    while time.monotonic() - started < limit:
        await asyncio.sleep(0.25)
        ticks = cpu_ticks(pid)
        if established(port) >= polls and ticks == last:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= 1.0:
                return time.monotonic() - started
        else:
            quiet_since = None
        last = ticks
    raise RuntimeError(f"polls not settled within {limit} s ({established(port)} connections)")


async def run(args) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="held-polls-"))
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="config.settings", PYTHONUNBUFFERED="1",
               DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
               DATABASE_URL=args.database_url or f"sqlite:///{workdir / 'bench.sqlite3'}")
    creds = provision(env, args.users)
    port = free_port()
    log = open(workdir / "daphne.log", "wb")
    server = start_daphne(env, port, log)
    base = f"http://127.0.0.1:{port}"
    result = {"polls": args.polls, "users": args.users, "redis": bool(os.environ.get("REDIS_URL")),
              "taskset": bool(shutil.which("taskset"))}
    try:
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        timeout = aiohttp.ClientTimeout(total=POLL_TIMEOUT + 60)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            headers = [{"Authorization": f"Bearer {t}"} for t in creds["tokens"]]
            async with session.get(f"{base}/notify/poll/", headers=headers[0]) as response:
                cursor = (await response.json())["cursor"]
            result["idle"] = proc_status(server.pid)
            sent_at = None

            async def poll(i: int):
                url = f"{base}/notify/poll/?since={cursor}&timeout={POLL_TIMEOUT}"
                async with session.get(url, headers=headers[i % args.users]) as response:
                    body = await response.json()
                    return time.monotonic(), response.status, body

            opened = time.monotonic()
            tasks = []
            # Open in batches: a burst of thousands of SYNs overflows the listen backlog
            # and the kernel's retransmission back-off then dominates the ramp-up.
            for start in range(0, args.polls, args.batch):
                tasks += [asyncio.ensure_future(poll(i)) for i in range(start, min(start + args.batch, args.polls))]
                deadline = time.monotonic() + 10
                while established(port) < len(tasks) and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
            failed = [t for t in tasks if t.done() and t.exception() is not None]
            if failed:
                raise SystemExit(f"{len(failed)} polls failed: {failed[0].exception()!r}")
            try:
                result["settle_s"] = round(await wait_idle(server.pid, port, args.polls, limit=POLL_TIMEOUT - 10), 2)
            finally:
                early = [t for t in tasks if t.done()]
                if early:
                    first = early[0].exception() or early[0].result()[1:]
                    print(f"{len(early)} polls answered before the send: {first!r}", file=sys.stderr)
            if early:
                raise SystemExit(1)
            result["held"] = proc_status(server.pid)
            sent_at = time.monotonic()
            async with session.post(f"{base}/notify/api/send/", headers={"Authorization": f"Bearer {creds['service']}"},
                                    json={"recipients": creds["usernames"], "title": "release"}) as response:
                assert response.status == 201, await response.text()
                ids = set((await response.json())["ids"])
            answers = await asyncio.gather(*tasks)
            if time.monotonic() - opened > POLL_TIMEOUT:
                print("warning: the run took longer than the poll timeout", file=sys.stderr)
            bad = [a for a in answers if a[1] != 200 or [n["id"] for n in a[2]["notifications"]] == []
                   or a[2]["notifications"][0]["id"] not in ids]
            if bad:
                raise SystemExit(f"{len(bad)} polls did not get the item: {bad[0][1:]}")
            release = sorted((done - sent_at) * 1000 for done, _, _ in answers)
            result["release_ms"] = {
                "p50": round(statistics.median(release), 1),
                "p90": round(release[int(len(release) * 0.9) - 1], 1),
                "max": round(release[-1], 1),
            }
            result["after"] = proc_status(server.pid)
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def main():
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {1})  # the client off the server's CPU 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--polls", type=int, default=500, help="long-polls held at once (default 500)")
    parser.add_argument("--users", type=int, default=1, help="users the polls are spread over (default 1)")
    parser.add_argument("--batch", type=int, default=200, help="polls opened per ramp-up step (default 200)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"),
                        help="database to use instead of a fresh SQLite file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (database, daphne log)")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    held, idle, after = result["held"], result["idle"], result["after"]
    print(f"{args.polls} held polls, {args.users} user(s): settled in {result['settle_s']} s")
    print(f"threads idle/held/after: {idle['threads']}/{held['threads']}/{after['threads']}")
    print(f"RSS MiB idle/held/after: {idle['rss_mib']}/{held['rss_mib']}/{after['rss_mib']}")
    print(f"release ms p50/p90/max: {result['release_ms']['p50']}/{result['release_ms']['p90']}/"
          f"{result['release_ms']['max']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
