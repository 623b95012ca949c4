"""The scenarios of bench/run.py besides ``fanout`` (issue 5). See docs/performance.md.

    python bench/run.py --scenario polls    # 10,000 held long-polls released by one send
    python bench/run.py --scenario sendapi  # service send API throughput (PostgreSQL)
    python bench/run.py --scenario resume   # reconnect with since behind a 500-item backlog
    python bench/run.py --scenario redis2   # two daphne processes over Redis, 5,000 clients each
    python bench/run.py --scenario drain    # SIGTERM to a process with 10,000 clients; they move over

Each function takes the parsed arguments and the runner module ``R`` (bench/run.py, for
its Notify target, Generator, Firing and /proc readers) and returns
``(results: dict, table: str)``. Every server is notify (``daphne config.asgi:application``
with ``bench.settings``) pinned to ``--server-cpus``; clients run in this process
(aiohttp, pinned to ``--gen-cpus``) or in the node generator. Every loop and wait is
bounded.
"""

import asyncio
import http.client
import json
import os
import statistics
import subprocess
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def pin_self(cpus):
    try:
        os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
    except (AttributeError, OSError, ValueError):
        pass


def threads_of(R, pid):
    return R.proc_status(pid, "Threads")


def pct(values, p):
    if not values:
        return None
    s = sorted(values)
    i = min(len(s) - 1, max(0, -(-len(s) * p // 100) - 1))
    return round(s[int(i)], 1)


def lat_summary(values):
    return {"n": len(values), "p50": pct(values, 50), "p90": pct(values, 90), "p99": pct(values, 99),
            "max": round(max(values), 1) if values else None}


def f0(x):
    return "–" if x is None else f"{x:,.0f}"


def post_json(port, path, payload, key, timeout=120):
    """POST JSON with a Bearer key; returns (status, parsed body, seconds taken)."""
    t0 = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=json.dumps(payload),
                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
        resp = conn.getresponse()
        data = resp.read()
        try:
            body = json.loads(data or b"{}")
        except ValueError:
            body = {"raw": data[:200].decode(errors="replace")}
        return resp.status, body, time.monotonic() - t0
    finally:
        conn.close()


def send(port, key, recipients, title, body="", timeout=120):
    status, data, took = post_json(port, "/notify/api/send/",
                                   {"recipients": recipients, "title": title, "body": body}, key, timeout)
    if status not in (200, 201):
        raise RuntimeError(f"send/ answered {status}: {str(data)[:200]}")
    return data["ids"], took


def wait_hellos(R, gen, want, limit=60.0):
    """Wait (bounded) until ``want`` clients got their ``hello`` frame: a client that
    connects without ``since`` is owed only the items after the hello's cursor, so an
    item sent between the handshake and the hello is rightly not pushed to it."""
    deadline, hello = time.monotonic() + limit, 0
    while time.monotonic() < deadline:
        hello = gen.cmd({"cmd": "report", "phases": {}}, "report", 60).get("hello", 0)
        if hello >= want:
            break
        time.sleep(0.5)
    return hello


def notify_target(args, R, users, port_offset=300, name="notify"):
    t = R.Notify(args, args.port_base + port_offset)
    t.prepare(users)
    t.name = name
    return t


def tokens_list(t):
    return [x.strip() for x in t.tokens.read_text().splitlines() if x.strip()]


def psql_count(url, sql):
    if not url.startswith("postgres"):
        return None
    try:
        r = subprocess.run(["psql", url, "-tAc", sql], capture_output=True, text=True, timeout=60)
        return int(r.stdout.strip()) if r.returncode == 0 else None
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


# ---------------------------------------------------------------------------------------
# polls: N held long-polls on one process, released by one send


async def _polls(args, R, t, tokens, res):
    import aiohttp

    port, pid, n, users = t.port, t.proc.pid, args.polls, args.poll_users
    base = f"http://127.0.0.1:{port}"
    # since = the newest id in the database: a priming send to user 0 creates it, so every
    # user's poll with since=<that id> holds (nothing newer exists) until the release.
    ids, _ = send(port, t.service_key, ["bench0"], "polls prime")
    since = ids[0]
    res["since"] = since
    res["idle"] = {"rss_kib": R.rss_kib(pid), "threads": threads_of(R, pid)}
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=args.poll_timeout + 60)
    done_at, statuses, got = {}, {}, {}

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async def poll(i):
            url = f"{base}/notify/poll/?since={since}&timeout={args.poll_timeout}"
            try:
                async with session.get(url, headers={"Authorization": f"Bearer {tokens[i % users]}"}) as r:
                    body = await r.read()
                    done_at[i] = time.monotonic()
                    statuses[i] = r.status
                    try:
                        got[i] = len(json.loads(body).get("notifications", []))
                    except ValueError:
                        got[i] = -1
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                done_at[i] = time.monotonic()
                statuses[i] = type(exc).__name__

        t_open = time.monotonic()
        tasks = []
        # Open in batches of --poll-batch, each waited for (bounded) on the server's
        # CPU going quiet would be slower; wait for the answers-in-flight count instead.
        for start in range(0, n, args.poll_batch):
            tasks += [asyncio.ensure_future(poll(i)) for i in range(start, min(start + args.poll_batch, n))]
            await asyncio.sleep(args.poll_batch / 5000.0)
        # Settle: every request read its (empty) backlog when the server's CPU stops moving.
        quiet, last, settle_deadline = None, R.cpu_seconds(pid), time.monotonic() + args.poll_timeout - 15
        while time.monotonic() < settle_deadline:
            await asyncio.sleep(0.25)
            cpu = R.cpu_seconds(pid)
            if cpu == last:
                quiet = quiet or time.monotonic()
                if time.monotonic() - quiet >= 1.0:
                    break
            else:
                quiet = None
            last = cpu
        res["open_and_settle_s"] = round(time.monotonic() - t_open, 2)
        early = len(done_at)
        res["answered_before_send"] = early
        if early:
            res["early_statuses"] = sorted({str(v) for v in statuses.values()})
        res["held"] = {"rss_kib": R.rss_kib(pid), "threads": threads_of(R, pid)}
        if res["held"]["rss_kib"] and res["idle"]["rss_kib"]:
            res["rss_per_poll_kib"] = round((res["held"]["rss_kib"] - res["idle"]["rss_kib"]) / max(1, n - early), 2)
        R.log(f"polls: {n - early} held after {res['open_and_settle_s']} s ({early} answered early), "
              f"RSS {res['idle']['rss_kib']} -> {res['held']['rss_kib']} KiB, threads {res['held']['threads']}")
        cpu0 = R.cpu_seconds(pid)
        sent_at = time.monotonic()
        recipients = ["bench0"] if users == 1 else [f"bench{i}" for i in range(users)]
        loop = asyncio.get_running_loop()
        _, took = await loop.run_in_executor(None, send, port, t.service_key, recipients, "release")
        res["send_request_ms"] = round(took * 1000, 1)
        await asyncio.wait(tasks, timeout=args.poll_timeout + 30)
        res["server_cpu_release_s"] = round(R.cpu_seconds(pid) - cpu0, 2)
        released = [i for i in range(n) if i in done_at and done_at[i] >= sent_at]
        ok = [i for i in released if statuses.get(i) == 200 and got.get(i, 0) >= 1]
        rel = [(done_at[i] - sent_at) * 1000 for i in ok]
        res["released_ok"] = len(ok)
        res["not_released"] = n - early - len(ok)
        res["release_ms"] = lat_summary(rel)
        res["after"] = {"rss_kib": R.rss_kib(pid), "threads": threads_of(R, pid)}


def run_polls(args, R):
    pin_self(args.gen_cpus)
    users = args.poll_users
    t = notify_target(args, R, max(users, 1))
    res = {"scenario": "polls", "polls": args.polls, "users": users, "ok": False}
    try:
        t.start()
        asyncio.run(_polls(args, R, t, tokens_list(t), res))
        res["ok"] = True
    except Exception as exc:  # noqa: BLE001 - recorded
        res["error"] = f"{type(exc).__name__}: {exc}"
        R.log(f"polls: ERROR {res['error']}")
    finally:
        t.stop()
    rows = ["| held polls | users | held | open + settle (s) | release p50 / p90 / p99 / max (ms) | not released "
            "| send request (ms) | threads idle / held / after | RSS idle / held (MiB) | RSS per poll (KiB) |",
            "|" + "---|" * 10]
    if res["ok"]:
        r = res["release_ms"]
        rows.append(
            f"| {args.polls:,} | {users:,} | {args.polls - res['answered_before_send']:,} | {res['open_and_settle_s']} "
            f"| {f0(r['p50'])} / {f0(r['p90'])} / {f0(r['p99'])} / {f0(r['max'])} | {res['not_released']:,} "
            f"| {f0(res['send_request_ms'])} | {res['idle']['threads']} / {res['held']['threads']} / "
            f"{res['after']['threads']} | {res['idle']['rss_kib'] / 1024:.0f} / {res['held']['rss_kib'] / 1024:.0f} "
            f"| {res.get('rss_per_poll_kib')} |")
    else:
        rows.append(f"| {args.polls:,} | {users:,} | error: {res.get('error')} |" + " |" * 7)
    return res, "\n".join(rows)


# ---------------------------------------------------------------------------------------
# sendapi: the service send API's throughput, recipients connected over WebSocket


def run_sendapi(args, R):
    per, users, conc, reqs = args.send_recipients, args.send_users, args.send_concurrency, args.send_requests
    connected = min(args.send_connected, users)
    t = notify_target(args, R, users)
    res = {"scenario": "sendapi", "recipients_per_request": per, "users": users, "concurrency": conc,
           "requests": reqs, "connected": connected, "database": args.notify_database_url.split("@")[-1],
           "ok": False}
    gen = None
    run_id = time.strftime("%H%M%S")
    try:
        t.start()
        pid = t.proc.pid
        if connected:
            tok = R.RESULTS / "sendapi-tokens.txt"
            tok.write_text("\n".join(tokens_list(t)[:connected]) + "\n")
            gen = R.Generator(t.ws_url, connected, min(args.workers, 2), tok, args.concurrency,
                              args.connect_timeout, args.gen_cpus)
            res["connect"] = gen.expect("connected", args.connect_timeout + 30)
            res["hellos"] = wait_hellos(R, gen, res["connect"]["ok"])
            R.log(f"sendapi: {res['connect']['ok']} recipients connected, {res['hellos']} hellos")
        # Request k addresses users [k*per, (k+1)*per) modulo `users`; its body carries
        # seq 5000+k so the generator counts the pushes of every request.
        seqs = [5000 + k for k in range(reqs)]
        lat, stored, errors = [], [], []
        lock = threading.Lock()
        nxt = iter(range(reqs))

        def worker():
            for _ in range(reqs):
                with lock:
                    k = next(nxt, None)
                if k is None:
                    return
                rec = [f"bench{(k * per + j) % users}" for j in range(per)]
                stamp = time.time() * 1000.0
                try:
                    ids, took = send(t.port, t.service_key, rec, f"sendapi {run_id} {k}",
                                     json.dumps({"seq": 5000 + k, "t": stamp}), timeout=R.TRIGGER_TIMEOUT)
                    with lock:
                        lat.append(took * 1000)
                        stored.append(len(ids))
                except Exception as exc:  # noqa: BLE001
                    with lock:
                        errors.append(repr(exc)[:200])

        cpu0 = R.cpu_seconds(pid)
        t0 = time.monotonic()
        ths = [threading.Thread(target=worker, daemon=True) for _ in range(conc)]
        for th in ths:
            th.start()
        deadline = time.monotonic() + R.TRIGGER_TIMEOUT
        for th in ths:
            th.join(max(0.0, deadline - time.monotonic()))
        elapsed = time.monotonic() - t0
        res["server_cpu_s"] = round(R.cpu_seconds(pid) - cpu0, 2)
        res["stored"] = sum(stored)
        res["elapsed_s"] = round(elapsed, 2)
        res["stored_per_s"] = round(sum(stored) / elapsed) if elapsed else None
        res["request_ms"] = lat_summary(lat)
        res["errors"] = len(errors)
        if errors:
            res["first_error"] = errors[0]
        res["rows_in_db"] = psql_count(args.notify_database_url,
                                       f"SELECT count(*) FROM notify_entry WHERE title LIKE 'sendapi {run_id} %'")
        R.log(f"sendapi: {res['stored']} stored in {res['elapsed_s']} s = {res['stored_per_s']}/s, "
              f"rows in db {res['rows_in_db']}, errors {len(errors)}")
        if gen is not None:
            # Expected pushes: each request's recipients that are connected (users < connected).
            exp = sum(sum(1 for j in range(per) if (k * per + j) % users < connected) for k in range(reqs))
            res["push_expected"] = exp
            res["push_wait"] = gen.cmd({"cmd": "wait", "seqs": seqs, "timeout": args.wait_timeout,
                                        "idle": args.idle_timeout, "expect_per_seq": exp / max(1, reqs)},
                                       "waited", args.wait_timeout + 30)
            rep = gen.cmd({"cmd": "report", "phases": {"send": seqs}}, "report", 120)
            ph = rep["phases"]["send"]
            res["pushed"] = ph["delivered"]
            res["push_latency_ms"] = ph["latency_ms"]
            res["push_span_ms"] = ph["span_ms"]
            res["pushed_per_s"] = ph["deliveries_per_s"]
            res["push_duplicates"] = ph["duplicates"]
            res["push_out_of_order"] = ph["out_of_order"]
            res["frames"] = {k: rep.get(k) for k in ("frames", "typeCounts", "closeCodes", "errors", "open")}
        res["ok"] = True
    except Exception as exc:  # noqa: BLE001
        res["error"] = f"{type(exc).__name__}: {exc}"
        R.log(f"sendapi: ERROR {res['error']}")
    finally:
        if gen is not None:
            gen.close()
        t.stop()
    rows = ["| recipients/request | concurrent requests | requests | stored (rows in DB) | elapsed (s) "
            "| stored/s | request p50 / p99 (ms) | connected | pushed (of expected) | pushed/s | push p50 / p99 (ms) "
            "| errors |", "|" + "---|" * 12]
    if res["ok"]:
        pl = res.get("push_latency_ms") or {}
        rows.append(
            f"| {per:,} | {conc} | {reqs} | {res['stored']:,} ({f0(res['rows_in_db'])}) | {res['elapsed_s']} "
            f"| {f0(res['stored_per_s'])} | {f0(res['request_ms']['p50'])} / {f0(res['request_ms']['p99'])} "
            f"| {connected:,} | {f0(res.get('pushed'))} of {f0(res.get('push_expected'))} | {f0(res.get('pushed_per_s'))} "
            f"| {f0(pl.get('p50'))} / {f0(pl.get('p99'))} | {res['errors']} |")
    else:
        rows.append(f"| {per:,} | {conc} | {reqs} | error: {res.get('error')} |" + " |" * 8)
    return res, "\n".join(rows)


# ---------------------------------------------------------------------------------------
# resume: reconnect with since behind a backlog of 500


async def _resume_round(args, t, token, since, n):
    import aiohttp

    out = {}
    hdr = {"Authorization": f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        t0 = time.monotonic()
        got, first_ms, hello_ms = 0, None, None
        async with session.ws_connect(f"ws://127.0.0.1:{t.port}/ws/notify/?since={since}", headers=hdr,
                                      max_msg_size=1 << 20) as ws:
            out["open_ms"] = round((time.monotonic() - t0) * 1000, 1)
            for _ in range(n + 10):
                msg = await ws.receive(timeout=30)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                frame = json.loads(msg.data)
                if frame["type"] == "hello":
                    hello_ms = (time.monotonic() - t0) * 1000
                elif frame["type"] == "notification":
                    got += 1
                    first_ms = first_ms or (time.monotonic() - t0) * 1000
                    if got >= n:
                        break
                elif frame["type"] == "reset":
                    out["reset"] = frame
                    break
        out["ws_all_ms"] = round((time.monotonic() - t0) * 1000, 1)
        out["ws_received"] = got
        out["ws_hello_ms"] = round(hello_ms, 1) if hello_ms else None
        out["ws_first_ms"] = round(first_ms, 1) if first_ms else None
        t1 = time.monotonic()
        async with session.get(f"http://127.0.0.1:{t.port}/notify/poll/?since={since}&limit=500",
                               headers=hdr) as r:
            body = await r.json()
        out["poll_ms"] = round((time.monotonic() - t1) * 1000, 1)
        out["poll_received"] = len(body.get("notifications", []))
    return out


def run_resume(args, R):
    pin_self(args.gen_cpus)
    n, rounds = args.backlog, args.resume_rounds
    t = notify_target(args, R, 1)
    res = {"scenario": "resume", "backlog": n, "rounds": [], "ok": False}
    try:
        t.start()
        token = tokens_list(t)[0]
        for r in range(rounds):
            ids, _ = send(t.port, t.service_key, ["bench0"], "resume mark")
            since = ids[0]
            t0 = time.monotonic()
            for i in range(n):  # the backlog: n personal notifications to bench0
                send(t.port, t.service_key, ["bench0"], f"resume {r} {i}", "x" * 100)
            one = {"since": since, "fill_s": round(time.monotonic() - t0, 2)}
            one.update(asyncio.run(_resume_round(args, t, token, since, n)))
            R.log(f"resume round {r + 1}: {one}")
            res["rounds"].append(one)
        res["ok"] = True
    except Exception as exc:  # noqa: BLE001
        res["error"] = f"{type(exc).__name__}: {exc}"
        R.log(f"resume: ERROR {res['error']}")
    finally:
        t.stop()
    rows = ["| backlog | round | WebSocket: received | open (ms) | first item (ms) | all items (ms) "
            "| long-poll limit=500: received | answer (ms) |", "|" + "---|" * 8]
    for i, o in enumerate(res["rounds"]):
        rows.append(f"| {n} | {i + 1} | {o['ws_received']}{' (reset!)' if 'reset' in o else ''} | {o['open_ms']} "
                    f"| {o['ws_first_ms']} | {o['ws_all_ms']} | {o['poll_received']} | {o['poll_ms']} |")
    if res["rounds"]:
        med = statistics.median(o["ws_all_ms"] for o in res["rounds"])
        medp = statistics.median(o["poll_ms"] for o in res["rounds"])
        res["median_ws_all_ms"], res["median_poll_ms"] = med, medp
        rows.append(f"| {n} | median | | | | {med:.1f} | | {medp:.1f} |")
    if not res["ok"]:
        rows.append(f"| {n} | error: {res.get('error')} |" + " |" * 6)
    return res, "\n".join(rows)


# ---------------------------------------------------------------------------------------
# redis2: two daphne processes sharing Redis, N clients each, announcements via process A


def run_redis2(args, R):
    args.layer = "redis"
    args.redis_url = args.redis2_url
    n = args.redis2_clients
    try:
        import redis  # channels-redis' client

        redis.Redis.from_url(args.redis_url).flushdb()
    except Exception as exc:  # noqa: BLE001
        R.log(f"redis2: could not flush {args.redis_url}: {exc!r}")
    a = notify_target(args, R, 2 * n, 300, "notify-a")
    b = R.Notify(args, args.port_base + 301)
    b.name = "notify-b"
    for attr in ("tokens", "key_file", "service_key", "mode", "script"):
        setattr(b, attr, getattr(a, attr))
    toks = tokens_list(a)
    res = {"scenario": "redis2", "clients_per_process": n, "redis": args.redis_url, "processes": {}, "ok": False}
    gens = {}
    try:
        a.start()
        b.start()
        for t, lo in ((a, 0), (b, n)):
            f = R.RESULTS / f"redis2-tokens-{t.name}.txt"
            f.write_text("\n".join(toks[lo:lo + n]) + "\n")
            # Both generators connect at once, K/2 workers each, on the generator's CPU.
            gens[t.name] = R.Generator(t.ws_url, n, max(1, args.workers // 2), f, max(1, args.concurrency // 2),
                                       args.connect_timeout, args.gen_cpus)
        pids = {t.name: t.proc.pid for t in (a, b)}
        rss0 = {k: R.rss_kib(p) for k, p in pids.items()}
        for name, g in gens.items():
            res["processes"][name] = {"connect": g.expect("connected", args.connect_timeout + 30)}
        for name, g in gens.items():
            res["processes"][name]["hellos"] = wait_hellos(R, g, res["processes"][name]["connect"]["ok"])
        time.sleep(args.settle)
        for name, p in pids.items():
            pr = res["processes"][name]
            pr["rss_per_conn_kib"] = round((R.rss_kib(p) - rss0[name]) / max(1, pr["connect"]["ok"]), 2)
            R.log(f"redis2 {name}: {pr['connect']['ok']} connected in {pr['connect']['connect_all_ms']} ms")
        fan = list(range(1, args.announcements + 1))
        fire = R.fire_on_schedule(a, fan, args.interval)
        for name, g in gens.items():
            res["processes"][name]["fanout_wait"] = g.cmd(
                {"cmd": "wait", "seqs": fan, "timeout": args.wait_timeout, "idle": args.idle_timeout},
                "waited", args.wait_timeout + 30)
        burst = list(range(1001, 1001 + args.burst))
        if burst:
            fire(burst[0], len(burst))
            fire.join(R.TRIGGER_TIMEOUT)
            for name, g in gens.items():
                res["processes"][name]["burst_wait"] = g.cmd(
                    {"cmd": "wait", "seqs": burst, "timeout": args.wait_timeout, "idle": args.idle_timeout},
                    "waited", args.wait_timeout + 30)
        res["triggers"] = fire.join(30)
        for name, g in gens.items():
            res["processes"][name]["report"] = g.cmd({"cmd": "report", "phases": {"fanout": fan, "burst": burst}},
                                                     "report", 120)
        res["ok"] = True
    except Exception as exc:  # noqa: BLE001
        res["error"] = f"{type(exc).__name__}: {exc}"
        R.log(f"redis2: ERROR {res['error']}")
    finally:
        for g in gens.values():
            g.close()
        a.stop()
        b.stop()
    rows = ["| process | clients | connected | connect all (s) | RSS/conn (KiB) | fan-out p50 / p99 / max (ms) "
            "| to last client (ms) | fan-out lost | burst deliveries/s | burst p99 (ms) | burst lost |",
            "|" + "---|" * 11]
    for name, pr in res["processes"].items():
        if "report" not in pr:
            continue
        f, bb = pr["report"]["phases"]["fanout"], pr["report"]["phases"].get("burst")
        c = pr["connect"]
        lat = f["latency_ms"]
        rows.append(f"| {name} | {n:,} | {c['ok']:,} | {c['connect_all_ms'] / 1000:.2f} | {pr['rss_per_conn_kib']} "
                    f"| {f0(lat['p50'])} / {f0(lat['p99'])} / {f0(lat['max'])} | {f0(f['to_last_client_ms']['max'])} "
                    f"| {f['lost']:,} of {f['expected']:,} "
                    + (f"| {f0(bb['deliveries_per_s'])} | {f0(bb['latency_ms']['p99'])} | {bb['lost']:,} of "
                       f"{bb['expected']:,} |" if bb else "| – | – | – |"))
    if not res["ok"]:
        rows.append(f"| error: {res.get('error')} |" + " |" * 10)
    return res, "\n".join(rows)


# ---------------------------------------------------------------------------------------
# drain: SIGTERM to process A holding N WebSocket clients; they move to process B


def run_drain(args, R):
    """N clients on A; announcements through B every ``interval`` s throughout; A gets
    SIGTERM and drains over ``--drain-seconds``; each client, closed with 1012, waits
    the delay in the close reason and reconnects to B with ``since=<its cursor>``.
    Reports the time until every client is back (from the signal), handshake failures,
    lost and duplicated items, and the peak handshake rate B saw (reconnects per
    second)."""
    import signal

    args.layer = "redis"
    args.redis_url = args.redis2_url
    n = args.drain_clients
    a = notify_target(args, R, n, 400, "notify-a")
    b = R.Notify(args, args.port_base + 401)
    b.name = "notify-b"
    for attr in ("tokens", "key_file", "service_key", "mode", "script"):
        setattr(b, attr, getattr(a, attr))
    res = {"scenario": "drain", "clients": n, "drain_seconds": args.drain_seconds, "ok": False}
    gen = None
    try:
        os.environ["NOTIFY_DRAIN_SECONDS"] = str(args.drain_seconds)  # A drains over the window
        a.start()
        os.environ["NOTIFY_DRAIN_SECONDS"] = "0"  # B, stopped at the end, need not
        b.start()
        gen = R.Generator(a.ws_url, n, args.workers, a.tokens, args.concurrency, args.connect_timeout,
                          args.gen_cpus, reconnect_url=b.ws_url)
        res["connect"] = gen.expect("connected", args.connect_timeout + 30)
        res["hellos"] = wait_hellos(R, gen, res["connect"]["ok"])
        R.log(f"drain: {res['connect']['ok']} on A in {res['connect']['connect_all_ms']} ms")
        # Announcements through B from before the signal until well after the window.
        count = int((args.drain_seconds + 15) / args.interval)
        seqs = list(range(1, count + 1))
        fire = R.Firing(b)
        firing = threading.Thread(target=lambda: _fire_schedule(fire, seqs, args.interval), daemon=True)
        firing.start()
        time.sleep(2.0)
        t_signal = time.time() * 1000.0
        a.proc.send_signal(signal.SIGTERM)
        try:
            res["a_exit"] = a.proc.wait(args.drain_seconds + 60)
        except subprocess.TimeoutExpired:
            res["a_exit"] = "did not exit"
        res["a_exit_s"] = round((time.time() * 1000.0 - t_signal) / 1000, 2)
        firing.join(args.drain_seconds + 60)
        res["triggers_failed"] = sum(1 for x in fire.join(60) if "error" in x)
        res["wait"] = gen.cmd({"cmd": "wait", "seqs": seqs, "timeout": args.wait_timeout,
                               "idle": args.idle_timeout}, "waited", args.wait_timeout + 30)
        rep = gen.cmd({"cmd": "report", "phases": {"drain": seqs}}, "report", 120)
        d = rep["drain"]
        back = sorted(d["reconnects"])
        per_second = {}
        for t in back:
            per_second[int((t - t_signal) // 1000)] = per_second.get(int((t - t_signal) // 1000), 0) + 1
        phase = rep["phases"]["drain"]
        res.update({
            "told_1012": d["closes"], "reconnected": len(back), "open_at_end": rep["open"],
            "all_back_s": round((back[-1] - t_signal) / 1000, 2) if back else None,
            "handshake_failures": sum(d["failures"].values()), "failures": d["failures"],
            "peak_handshakes_per_s": max(per_second.values()) if per_second else None,
            "per_second": per_second, "delays_ms": {"min": min(d["delays"], default=None),
                                                    "max": max(d["delays"], default=None)},
            # out_of_order compares arrival with the trigger's seq; announcements fired
            # from concurrent threads commit (and get ids) in any order, so it is not
            # an ordering defect (the stream's order is the id order).
            "lost": phase["lost"], "duplicates": phase["duplicates"], "out_of_order_by_seq": phase["out_of_order"],
            "expected": phase["expected"], "close_codes": rep["closeCodes"],
            "latency_ms": phase["latency_ms"],
        })
        res["ok"] = True
    except Exception as exc:  # noqa: BLE001
        res["error"] = f"{type(exc).__name__}: {exc}"
        R.log(f"drain: ERROR {res['error']}")
    finally:
        if gen is not None:
            gen.close()
        a.stop()
        b.stop()
    rows = ["| clients on A | drain window (s) | told (1012) | back on B | all back after (s) | A exited after (s) "
            "| handshake failures | peak handshakes/s on B | items lost | duplicates |",
            "|" + "---|" * 10]
    if res["ok"]:
        rows.append(f"| {res['connect']['ok']:,} | {args.drain_seconds:g} | {res['told_1012']:,} | {res['reconnected']:,} "
                    f"| {res['all_back_s']} | {res['a_exit_s']} | {res['handshake_failures']:,} "
                    f"| {res['peak_handshakes_per_s']} | {res['lost']:,} of {res['expected']:,} "
                    f"| {res['duplicates']:,} |")
    else:
        rows.append(f"| error: {res.get('error')} |" + " |" * 9)
    return res, "\n".join(rows)


def _fire_schedule(fire, seqs, interval):
    t_start = time.monotonic()
    for i, seq in enumerate(seqs):
        delay = t_start + i * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        fire(seq, 1)


SCENARIOS = {"polls": run_polls, "sendapi": run_sendapi, "resume": run_resume, "redis2": run_redis2,
             "drain": run_drain}
