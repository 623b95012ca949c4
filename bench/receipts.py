#!/usr/bin/env python
"""The cost of delivery receipts on the fan-out path (issue 14).

    DATABASE_URL=postgres://... python bench/receipts.py --clients 1000 --announcements 20

Migrates the database named by DATABASE_URL (a scratch one: the bench adds users and
tokens), starts one daphne process (in-memory channel layer), opens N WebSocket
clients (one user and Bearer token each, ``client=`` ids set), then runs rounds that
cycle through three modes on the same server and connections: no acks; every client
acks every item on receipt (``{"type": "ack", "id": N}``, the worst case); and acks
as client.js sends them (the highest id, at most one per 300 ms per client). Each round posts M announcements back
to back through the service API and waits until every client has all of them:
deliveries/s = N x M / (last delivery - first post). Prints each round and the median
of each mode, and the receipt rows written (one per device).
"""

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
MODES = ("none", "every item", "client.js")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(args, port, tokens, service_key, server_pid):
    import aiohttp
    from websockets.asyncio.client import connect

    url = f"ws://127.0.0.1:{port}/ws/notify/"
    sockets = []
    for i, token in enumerate(tokens):
        ws = await connect(f"{url}?client=bench{i}", additional_headers={"Authorization": f"Bearer {token}"},
                           subprotocols=["notify.v1"], max_queue=None, open_timeout=30)
        assert json.loads(await ws.recv())["type"] == "hello"
        sockets.append(ws)
    print(f"{len(sockets)} clients connected", file=sys.stderr)

    state = {"ack": MODES[0], "want": 0, "counts": [0] * len(sockets), "done": 0, "last": 0.0, "event": None}
    pending = [0] * len(sockets)

    async def coalesced(ws, i):
        await asyncio.sleep(0.3)
        highest, pending[i] = pending[i], 0
        await ws.send(json.dumps({"type": "ack", "id": highest}))

    async def reader(i, ws):
        async for text in ws:
            frame = json.loads(text)
            if frame.get("type") != "notification":
                continue
            if state["ack"] == "every item":
                await ws.send(json.dumps({"type": "ack", "id": frame["notification"]["id"]}))
            elif state["ack"] == "client.js":
                if not pending[i]:
                    asyncio.get_running_loop().create_task(coalesced(ws, i))
                pending[i] = frame["notification"]["id"]
            state["counts"][i] += 1
            if state["counts"][i] == state["want"]:
                state["done"] += 1
                state["last"] = time.perf_counter()
                if state["done"] == len(sockets):
                    state["event"].set()

    readers = [asyncio.create_task(reader(i, ws)) for i, ws in enumerate(sockets)]
    results = {mode: [] for mode in MODES}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {service_key}"}) as http:
        for round_no in range(args.rounds * len(MODES)):
            ack = MODES[round_no % len(MODES)]
            state.update(ack=ack, want=args.announcements, counts=[0] * len(sockets), done=0,
                         event=asyncio.Event())
            started = time.perf_counter()
            cpu_before = cpu_seconds(server_pid)
            for n in range(args.announcements):
                async with http.post(f"http://127.0.0.1:{port}/notify/api/announce/",
                                     json={"title": f"round {round_no} #{n}"}) as response:
                    assert response.status == 201, await response.text()
            await asyncio.wait_for(state["event"].wait(), timeout=300)
            rate = len(sockets) * args.announcements / (state["last"] - started)
            await asyncio.sleep(1.0)  # the last acks flush: their cost counts for this round
            cpu_ms = (cpu_seconds(server_pid) - cpu_before) * 1000 / (len(sockets) * args.announcements / 1000)
            results[ack].append((rate, cpu_ms))
            print(f"round {round_no + 1}: acks: {ack}: {rate:,.0f} deliveries/s, server CPU {cpu_ms:.0f} ms"
                  " per 1,000 deliveries", file=sys.stderr)
    for task in readers:
        task.cancel()
    for ws in sockets:
        await ws.close()
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--announcements", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each mode")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from notify.models import ApiToken, DeviceReceipt

    call_command("migrate", verbosity=0)
    User = get_user_model()
    tag = f"rb{int(time.time())}"
    users = User.objects.bulk_create([User(username=f"{tag}-{i}", password="!") for i in range(args.clients)])
    tokens = [ApiToken.objects.issue(user=u) for u in users]
    service_key = ApiToken.objects.issue(name=tag, service=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    server = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                               "config.asgi:application"], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        results = asyncio.run(run(args, port, tokens, service_key, server.pid))
    finally:
        server.terminate()
        server.wait(10)
    rows = DeviceReceipt.objects.filter(user__username__startswith=f"{tag}-").count()
    rates = {mode: statistics.median(r for r, _ in runs) for mode, runs in results.items()}
    cpu = {mode: statistics.median(c for _, c in runs) for mode, runs in results.items()}
    print(f"{args.clients} clients x {args.announcements} announcements, {args.rounds} rounds each, "
          f"database={settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}; medians:")
    for mode in MODES:
        print(f"  acks {mode:>10}: {rates[mode]:>8,.0f} deliveries/s ({(rates[mode] - rates['none']) / rates['none']:+.0%}),"
              f" server CPU {cpu[mode]:.0f} ms per 1,000 deliveries ({(cpu[mode] - cpu['none']) / cpu['none']:+.0%})")
    print(f"  receipt rows: {rows} (one per device)")
    User.objects.filter(username__startswith=f"{tag}-").delete()
    ApiToken.objects.filter(name=tag).delete()


if __name__ == "__main__":
    main()
