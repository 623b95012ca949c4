#!/usr/bin/env python
"""One-command benchmark runner for notify (issue 5). See docs/performance.md.

    python bench/run.py --scenario fanout --clients 1000,5000,10000 \
        --target baseline,notify,echo
    python bench/run.py --quick            # smoke run: 200 and 1000 clients, baseline+echo

For every N and every target (interleaved, so every ratio compares runs made minutes
apart on the same machine): start the server pinned to core 0 (``taskset -c 0``), read
its RSS, open N WebSocket clients from the node load generator pinned to core 1 (K
worker processes), read the RSS again (RSS per idle connection = delta / N), send
``--announcements`` announcements ``--interval`` s apart (fan-out latency), then a
burst of ``--burst`` back to back (deliveries/s), collect the generator's report, stop
everything. Prints a markdown table and writes the raw JSON to bench/results/.

Targets:
  baseline  plain Channels group_send consumer (bench/baseline), daphne, one process
  notify    the app: daphne config.asgi:application, Bearer-token clients
  echo      trivial node ws broadcast server (bench/echo): the generator's ceiling
"""

import argparse
import http.client
import json
import os
import platform
import queue
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
LOADGEN = BENCH / "loadgen"
RESULTS = BENCH / "results"
PYTHON = sys.executable
TRIGGER_TIMEOUT = 300  # s; a trigger request to a saturated server can wait long
DAPHNE = shutil.which("daphne", path=str(Path(PYTHON).parent)) or shutil.which("daphne") or "daphne"


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def child_setup():
    raise_nofile()
    os.setsid()  # own process group: stop() can signal the server and its children only


# ---------------------------------------------------------------------------------------
# /proc readers


def proc_status(pid, field):
    """Return the first number of ``field`` in /proc/PID/status (e.g. ``VmRSS`` in KiB,
    ``Threads``), or None when the process or the field is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_kib(pid):
    return proc_status(pid, "VmRSS")


def cpu_seconds(pid):
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def listen_overflows():
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
        for head, vals in zip(lines[::2], lines[1::2]):
            if head.startswith("TcpExt:"):
                d = dict(zip(head.split()[1:], vals.split()[1:]))
                return int(d.get("ListenOverflows", 0))
    except (OSError, ValueError):
        return None
    return None


def machine_info():
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    mem = ""
    try:
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": node,
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
    }


# ---------------------------------------------------------------------------------------
# helpers


def wait_port(port, timeout, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def ws_handshake(port, path, headers=None, timeout=10.0):
    """One WebSocket handshake (warms the server's imports before RSS is read)."""
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            status = s.recv(4096).split(b"\r\n", 1)[0].decode(errors="replace")
            time.sleep(0.2)
            return status
    except OSError as exc:
        return f"error {exc!r}"


def stop(proc, name, timeout=10):
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except OSError:
        proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log(f"{name} did not stop in {timeout}s: SIGKILL")
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            proc.kill()
        proc.wait(5)


class LineReader:
    """Reads a child's stdout lines on a thread, so every read can have a timeout."""

    def __init__(self, stream):
        self.q = queue.Queue()
        self.t = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self.t.start()

    def _run(self, stream):
        for line in stream:
            self.q.put(line)
        self.q.put(None)

    def get(self, timeout):
        try:
            return self.q.get(timeout=max(0.01, timeout))
        except queue.Empty:
            return ""


class Generator:
    def __init__(self, url, clients, workers, tokens, concurrency, connect_timeout, cpus, reconnect_url=None):
        cmd = ["taskset", "-c", cpus, "node", str(LOADGEN / "coordinator.js"), "--url", url,
               "--clients", str(clients), "--workers", str(workers),
               "--concurrency", str(concurrency), "--connect-timeout", str(connect_timeout)]
        if reconnect_url:
            cmd += ["--reconnect-url", reconnect_url]
        if tokens:
            cmd += ["--tokens", str(tokens)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, preexec_fn=child_setup, cwd=str(LOADGEN))
        self.reader = LineReader(self.proc.stdout)

    def expect(self, ev, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.reader.get(deadline - time.monotonic())
            if line is None:
                raise RuntimeError(f"load generator exited (rc={self.proc.poll()}) waiting for {ev}")
            if not line:
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                log(f"generator: {line.strip()}")
                continue
            if msg.get("ev") == ev:
                return msg
            if msg.get("ev") == "error":
                raise RuntimeError(f"load generator error: {msg.get('message')}")
        raise TimeoutError(f"no {ev!r} from the load generator in {timeout}s")

    def cmd(self, obj, ev, timeout):
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()
        return self.expect(ev, timeout)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.cmd({"cmd": "close"}, "closed", 15)
            except (RuntimeError, TimeoutError, OSError) as exc:
                log(f"generator close: {exc}")
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            stop(self.proc, "generator")


# ---------------------------------------------------------------------------------------
# targets


class NotReady(Exception):
    pass


class Target:
    name = "?"
    ws_path = "/ws/"

    def __init__(self, args, port):
        self.args, self.port, self.proc, self.tokens = args, port, None, None

    @property
    def ws_url(self):
        return f"ws://127.0.0.1:{self.port}{self.ws_path}"

    def prepare(self, max_clients):
        """Once per bench run, before any server starts."""

    def start(self):
        raise NotImplementedError

    def warm_headers(self):
        return {}

    def trigger(self, seq, count, t):
        raise NotImplementedError

    def stop(self):
        stop(self.proc, self.name)
        self.proc = None
        self.after_stop()

    def after_stop(self):
        pass

    def _spawn(self, cmd, env=None, cwd=REPO, logname=None):
        RESULTS.mkdir(parents=True, exist_ok=True)
        logf = open(RESULTS / (logname or f"{self.name}-server.log"), "ab")
        full = ["taskset", "-c", self.args.server_cpus] + cmd
        self.proc = subprocess.Popen(full, cwd=str(cwd), env=env, stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, preexec_fn=child_setup)
        logf.close()
        if not wait_port(self.port, 60, self.proc):
            rc = self.proc.poll()
            self.stop()
            raise NotReady(f"{self.name} server did not listen on {self.port} (rc={rc}); "
                           f"see {RESULTS / (logname or f'{self.name}-server.log')}")
        return self.proc

    def _post(self, path, payload, headers=None, timeout=None):
        timeout = timeout or TRIGGER_TIMEOUT
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            body = json.dumps(payload)
            h = {"Content-Type": "application/json"}
            h.update(headers or {})
            conn.request("POST", path, body=body, headers=h)
            resp = conn.getresponse()
            data = resp.read()
            if resp.status >= 300:
                raise RuntimeError(f"{self.name} trigger {path}: HTTP {resp.status} {data[:200]!r}")
            return json.loads(data or b"{}")
        finally:
            conn.close()


def daphne_cmd(port, app):
    return [DAPHNE, "-v", "0", "-e", f"tcp:port={port}:backlog=4096:interface=127.0.0.1", app]


class Baseline(Target):
    name = "baseline"

    def start(self):
        env = dict(os.environ, DJANGO_SETTINGS_MODULE="bench.baseline.settings",
                   BASELINE_LAYER=self.args.baseline_layer, PYTHONPATH=str(REPO))
        if self.args.redis_url:
            env["BASELINE_REDIS_URL"] = self.args.redis_url
        return self._spawn(daphne_cmd(self.port, "bench.baseline.asgi:application"), env=env)

    def trigger(self, seq, count, t):
        self._post("/announce/", {"seq": seq, "count": count, "t": t})


class Echo(Target):
    name = "echo"

    def start(self):
        return self._spawn(["node", str(BENCH / "echo" / "server.js"), "--port", str(self.port),
                            "--backlog", "4096"])

    def trigger(self, seq, count, t):
        self._post("/announce", {"seq": seq, "count": count, "t": t})


class Notify(Target):
    """notify itself: ``daphne config.asgi:application`` from the repo root.

    Needs from the app: ``config/asgi.py``; ``notify.models.ApiToken.objects.issue(user=,
    name=)`` returning the raw token; the WebSocket at ``/ws/notify/`` accepting
    ``Authorization: Bearer``; and to trigger, either ``manage.py notify_token --service``
    plus ``POST /notify/api/announce/`` (trigger ``api``) or ``notify.api.announce`` with
    ``REDIS_URL`` (trigger ``script``).
    """

    name = "notify"
    ws_path = "/ws/notify/"

    def env(self):
        env = dict(os.environ, DJANGO_SETTINGS_MODULE="bench.settings", DJANGO_DEBUG="0",
                   PYTHONPATH=str(REPO))
        env.setdefault("NOTIFY_LOG_LEVEL", "WARNING")
        env["DATABASE_URL"] = self.args.notify_database_url
        if self.args.layer == "redis":
            env["REDIS_URL"] = self.args.redis_url
        else:
            env.pop("REDIS_URL", None)
        return env

    def prepare(self, max_clients):
        if not (REPO / "config" / "asgi.py").exists():
            raise NotReady("config/asgi.py does not exist yet")
        RESULTS.mkdir(parents=True, exist_ok=True)
        tag = "notify" if self.args.scenario == "fanout" else f"notify-{self.args.scenario}"
        self.tokens = RESULTS / f"{tag}-tokens.txt"
        self.key_file = RESULTS / f"{tag}-service-key.txt"
        log(f"notify: provisioning {max_clients} users and tokens ({self.args.notify_database_url})")
        r = subprocess.run([PYTHON, str(BENCH / "notify_provision.py"), "--users", str(max_clients),
                            "--tokens-out", str(self.tokens), "--service-key-out", str(self.key_file)],
                           cwd=str(REPO), env=self.env(), capture_output=True, text=True, timeout=1800)
        if r.returncode != 0:
            reason = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
            raise NotReady(f"provisioning failed: {reason}")
        log(f"notify: provisioned {r.stdout.strip()}")
        self.service_key = self.key_file.read_text().strip() if self.key_file.exists() else None
        mode = self.args.notify_trigger
        if mode == "auto":
            mode = "api" if self.service_key else "script"
        if mode == "api" and not self.service_key:
            raise NotReady("trigger 'api' needs a service key (manage.py notify_token --service)")
        if mode == "script" and self.args.layer != "redis":
            raise NotReady("trigger 'script' (notify.api.announce in another process) needs "
                           "--layer redis; the in-memory layer cannot reach daphne")
        self.mode = mode
        self.script = None

    def start(self):
        proc = self._spawn(daphne_cmd(self.port, "config.asgi:application"), env=self.env())
        if self.mode == "api":
            # Probe with an invalid body (no title): 400 means the endpoint exists.
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                conn.request("POST", "/notify/api/announce/", body="{}",
                             headers={"Content-Type": "application/json",
                                      "Authorization": f"Bearer {self.service_key}"})
                status = conn.getresponse().status
            except OSError as exc:
                status = repr(exc)
            finally:
                conn.close()
            if not isinstance(status, int) or status in (401, 403, 404, 405) or status >= 500:
                self.stop()
                raise NotReady(f"POST /notify/api/announce/ answered {status}: the service API is not "
                               "ready; try --layer redis --notify-trigger script")
        self.script_lock = threading.Lock()
        if self.mode == "script":
            self.script = subprocess.Popen([PYTHON, str(BENCH / "notify_trigger.py")], cwd=str(REPO),
                                           env=self.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           text=True)
            self.script_reader = LineReader(self.script.stdout)
            line = self.script_reader.get(60)
            if not line or not json.loads(line).get("ready"):
                self.stop()
                raise NotReady("bench/notify_trigger.py did not start (notify.api.announce)")
        return proc

    def warm_headers(self):
        tok = self.tokens.read_text().split("\n", 1)[0].strip()
        return {"Authorization": f"Bearer {tok}"}

    def trigger(self, seq, count, t):
        if self.mode == "script":
            with self.script_lock:
                self.script.stdin.write(json.dumps({"seq": seq, "count": count, "t": t}) + "\n")
                self.script.stdin.flush()
                line = self.script_reader.get(TRIGGER_TIMEOUT)
            if not line or not json.loads(line).get("ok"):
                raise RuntimeError(f"notify trigger failed: {line!r}")
            return
        if count == 1:
            self._announce_one(seq, t)
            return
        # A burst: every announcement its own request, all in flight at once, each
        # stamped just before it is sent (one request after another's answer would
        # measure the request round trip under load, not the fan-out).
        errors = []

        def one(i):
            try:
                self._announce_one(seq + i, time.time() * 1000.0)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(repr(exc))

        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(count)]
        for th in threads:
            th.start()
        deadline = time.monotonic() + TRIGGER_TIMEOUT
        for th in threads:
            th.join(max(0.0, deadline - time.monotonic()))
        if errors:
            raise RuntimeError(f"{len(errors)} of {count} announce requests failed: {errors[0]}")

    def _announce_one(self, seq, stamp):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TRIGGER_TIMEOUT)
        try:
            payload = json.dumps({"title": f"bench {seq}", "body": json.dumps({"seq": seq, "t": stamp})})
            conn.request("POST", "/notify/api/announce/", body=payload,
                         headers={"Content-Type": "application/json",
                                  "Authorization": f"Bearer {self.service_key}"})
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 201:
                raise RuntimeError(f"notify announce: HTTP {resp.status} {data[:200]!r}")
        finally:
            conn.close()

    def after_stop(self):
        if getattr(self, "script", None) is not None:
            try:
                self.script.stdin.close()
                self.script.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.script.kill()
            self.script = None


TARGETS = {"baseline": Baseline, "notify": Notify, "echo": Echo}
PORTS = {"baseline": 0, "notify": 100, "echo": 200}


class Firing:
    """Fires triggers on daemon threads and records how long each call took."""

    def __init__(self, target):
        self.target, self.threads, self.log = target, [], []

    def __call__(self, seq, count):
        t = time.time() * 1000.0

        def run():
            try:
                self.target.trigger(seq, count, t)
                self.log.append({"seq": seq, "count": count, "call_ms": round(time.time() * 1000.0 - t, 1)})
            except Exception as exc:  # noqa: BLE001 - recorded in the results
                self.log.append({"seq": seq, "count": count, "error": f"{type(exc).__name__}: {exc}"[:300]})

        th = threading.Thread(target=run, daemon=True)
        th.start()
        self.threads.append(th)

    def join(self, timeout):
        deadline = time.monotonic() + timeout
        for th in self.threads:
            th.join(max(0.0, deadline - time.monotonic()))
        pending = sum(th.is_alive() for th in self.threads)
        out = sorted(self.log, key=lambda x: x["seq"])
        if pending:
            out.append({"seq": None, "error": f"{pending} trigger call(s) still running"})
        return out


# ---------------------------------------------------------------------------------------
# one measurement


def run_one(target, n, args):
    res = {"target": target.name, "clients": n, "ok": False}
    gen = None
    try:
        target.start()
        pid = target.proc.pid
        status = ws_handshake(target.port, target.ws_path, target.warm_headers())
        res["warmup_handshake"] = status
        if " 101 " not in status + " ":
            raise NotReady(f"{target.name}: warm-up WebSocket handshake got {status!r}")
        time.sleep(1.0)
        res["rss_before_kib"] = rss_kib(pid)
        res["loadavg_before"] = Path("/proc/loadavg").read_text().split()[:3]
        cpu0 = cpu_seconds(pid)
        lo0 = listen_overflows()

        log(f"{target.name} N={n}: connecting")
        tokens = target.tokens if target.name == "notify" else None
        gen = Generator(target.ws_url, n, args.workers, tokens, args.concurrency,
                        args.connect_timeout, args.gen_cpus)
        conn = gen.expect("connected", args.connect_timeout + 30)
        res["connect"] = conn
        res["listen_overflows"] = (listen_overflows() or 0) - (lo0 or 0)
        # Every client must have its hello before the first announcement: notify owes a
        # client that connects without since only the items after its hello's cursor.
        t_h, deadline = time.monotonic(), time.monotonic() + args.hello_timeout
        while time.monotonic() < deadline:
            res["hellos"] = gen.cmd({"cmd": "report", "phases": {}}, "report", 60).get("hello", 0)
            if res["hellos"] >= conn["ok"]:
                break
            time.sleep(0.5)
        res["hello_wait_s"] = round(time.monotonic() - t_h, 2)
        time.sleep(args.settle)
        res["rss_after_kib"] = rss_kib(pid)
        if conn["ok"]:
            res["rss_per_conn_kib"] = round((res["rss_after_kib"] - res["rss_before_kib"]) / conn["ok"], 2)
        cpu1 = cpu_seconds(pid)
        res["server_cpu_connect_s"] = round(cpu1 - cpu0, 2) if cpu0 is not None and cpu1 is not None else None
        log(f"{target.name} N={n}: {conn['ok']} connected in {conn['connect_all_ms']} ms "
            f"(failed {conn['failed']}), RSS {res['rss_before_kib']} -> {res['rss_after_kib']} KiB")
        if not conn["ok"]:
            raise RuntimeError(f"no client connected: {conn.get('failures')}")

        # Fan-out: announcements `interval` s apart on a fixed schedule. Triggers are
        # fired from threads, so a saturated server that answers late cannot stretch
        # the schedule; t (the send timestamp in the frame) is taken before the call.
        fan = list(range(1, args.announcements + 1))
        # The idle clock starts once the server has taken every trigger (a saturated
        # server may answer a trigger long after it was sent).
        fire = fire_on_schedule(target, fan, args.interval)
        res["fanout_wait"] = gen.cmd({"cmd": "wait", "seqs": fan, "timeout": args.wait_timeout,
                                      "idle": args.idle_timeout}, "waited", args.wait_timeout + 30)
        log(f"{target.name} N={n}: fan-out {res['fanout_wait']}")
        cpu2 = cpu_seconds(pid)

        # Burst: `burst` announcements back to back.
        burst = list(range(1001, 1001 + args.burst))
        if burst:
            fire(burst[0], len(burst))
            fire.join(TRIGGER_TIMEOUT)
            res["burst_wait"] = gen.cmd({"cmd": "wait", "seqs": burst, "timeout": args.wait_timeout,
                                         "idle": args.idle_timeout}, "waited", args.wait_timeout + 30)
            log(f"{target.name} N={n}: burst {res['burst_wait']}")
        cpu3 = cpu_seconds(pid)
        if cpu2 is not None and cpu3 is not None:
            res["server_cpu_burst_s"] = round(cpu3 - cpu2, 2)
        res["triggers"] = fire.join(30)
        failed = [x for x in res["triggers"] if "error" in x]
        if failed:
            log(f"{target.name} N={n}: {len(failed)} trigger(s) failed: {failed[0]['error']}")
        res["rss_end_kib"] = rss_kib(pid)
        rep = gen.cmd({"cmd": "report", "phases": {"fanout": fan, "burst": burst}}, "report", 120)
        res["report"] = rep
        res["ok"] = True
    except NotReady as exc:
        res["skipped"] = str(exc)
        log(f"{target.name} N={n}: SKIPPED: {exc}")
    except (RuntimeError, TimeoutError, OSError, ValueError, KeyError) as exc:
        res["error"] = f"{type(exc).__name__}: {exc}"
        log(f"{target.name} N={n}: ERROR: {res['error']}")
    finally:
        if gen is not None:
            gen.close()
        target.stop()
    return res


# ---------------------------------------------------------------------------------------
# report


def fmt(x, nd=0):
    if x is None:
        return "–"
    if isinstance(x, float) and nd == 0:
        return f"{x:,.0f}"
    if isinstance(x, (int, float)):
        return f"{x:,.{nd}f}" if nd else f"{x:,}"
    return str(x)


def table(results):
    head = ("| target | N | connected | connect all (s) | RSS/conn (KiB) | fan-out p50 / p99 / max (ms) "
            "| to last client (ms) | fan-out lost | burst deliveries/s | burst p99 (ms) | burst lost | vs baseline |")
    rows = [head, "|" + "---|" * 12]
    base = {r["clients"]: r for r in results if r["target"] == "baseline" and r.get("ok")}
    for r in results:
        n = r["clients"]
        if not r.get("ok"):
            why = r.get("skipped") or r.get("error") or "?"
            rows.append(f"| {r['target']} | {n:,} | {'pending' if 'skipped' in r else 'error'}: {why} |"
                        + " |" * 9)
            continue
        c = r["report"]
        f, b = c["phases"]["fanout"], c["phases"].get("burst")
        conn = r["connect"]
        ratio = "–"
        if r["target"] != "baseline" and n in base and b and b["deliveries_per_s"]:
            bb = base[n]["report"]["phases"].get("burst")
            if bb and bb["deliveries_per_s"]:
                ratio = f"{b['deliveries_per_s'] / bb['deliveries_per_s']:.1f}× deliveries/s"
        lat = f["latency_ms"]
        rows.append(
            f"| {r['target']} | {n:,} | {conn['ok']:,}" + (f" ({conn['failed']:,} failed)" if conn["failed"] else "")
            + f" | {conn['connect_all_ms'] / 1000:.2f} | {fmt(r.get('rss_per_conn_kib'), 1)}"
            + f" | {fmt(lat['p50'])} / {fmt(lat['p99'])} / {fmt(lat['max'])}"
            + f" | {fmt(f['to_last_client_ms']['max'])}"
            + f" | {f['lost']:,} of {f['expected']:,}"
            + (f" | {fmt(b['deliveries_per_s'])} | {fmt(b['latency_ms']['p99'])} | {b['lost']:,} of {b['expected']:,}"
               if b else " | – | – | –")
            + f" | {ratio} |"
        )
    return "\n".join(rows)


def fire_on_schedule(target, seqs, interval):
    """Trigger one announcement per seq, ``interval`` seconds apart on a fixed schedule
    (from threads, so a server that answers late cannot stretch it), then wait (at most
    TRIGGER_TIMEOUT) until the server has taken every trigger. Returns the ``Firing``,
    for the burst that follows."""
    fire = Firing(target)
    t_start = time.monotonic()
    for i, seq in enumerate(seqs):
        delay = t_start + i * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        fire(seq, 1)
    fire.join(TRIGGER_TIMEOUT)
    return fire


def main():
    p = argparse.ArgumentParser(description="notify benchmark runner (see docs/performance.md)")
    p.add_argument("--scenario", default="fanout",
                   choices=["fanout", "polls", "sendapi", "resume", "redis2", "drain"],
                   help="fanout: N WebSocket clients, announcements and a burst, per target; polls: held "
                        "long-polls released by one send; sendapi: service send API throughput; resume: "
                        "reconnect behind a backlog; redis2: two notify processes over Redis; drain: SIGTERM to a process "
                        "holding N clients, which move to the other (bench/scenarios.py)")
    p.add_argument("--clients", default="1000,5000,10000", help="comma-separated N values")
    p.add_argument("--target", default="baseline,notify,echo", help="comma-separated: baseline, notify, echo")
    p.add_argument("--quick", action="store_true", help="smoke run: N=200,1000, 3 announcements, burst 10")
    p.add_argument("--announcements", type=int, default=10)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between announcements")
    p.add_argument("--burst", type=int, default=50, help="announcements back to back")
    p.add_argument("--workers", type=int, default=4, help="load-generator worker processes")
    p.add_argument("--concurrency", type=int, default=500, help="handshakes in flight (all workers)")
    p.add_argument("--connect-timeout", type=float, default=180)
    p.add_argument("--wait-timeout", type=float, default=300, help="max seconds to wait for a phase")
    p.add_argument("--idle-timeout", type=float, default=30, help="give up a phase after s without frames")
    p.add_argument("--trigger-timeout", type=float, default=TRIGGER_TIMEOUT,
                   help="max seconds a trigger request (or the wait for all of them) may take")
    p.add_argument("--settle", type=float, default=2.0, help="seconds after connect before RSS is read")
    p.add_argument("--hello-timeout", type=float, default=60,
                   help="max seconds to wait, after connect, for every client's hello frame")
    p.add_argument("--server-cpus", default="0")
    p.add_argument("--gen-cpus", default="1")
    p.add_argument("--port-base", type=int, default=8100)
    p.add_argument("--layer", default="memory", choices=["memory", "redis"],
                   help="channel layer for notify (REDIS_URL) and the baseline")
    p.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"))
    p.add_argument("--notify-database-url",
                   default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/notify_bench"),
                   help="notify's DATABASE_URL (default PostgreSQL notify_bench; sqlite:///path works too)")
    p.add_argument("--notify-trigger", default="auto", choices=["auto", "api", "script"],
                   help="api: POST /notify/api/announce/ with a service key; script: notify.api.announce "
                        "in bench/notify_trigger.py (needs --layer redis); auto: api if a key was issued")
    g = p.add_argument_group("polls")
    g.add_argument("--polls", type=int, default=10000, help="long-polls held at once")
    g.add_argument("--poll-users", type=int, default=1, help="users the polls are spread over (round robin)")
    g.add_argument("--poll-batch", type=int, default=500, help="polls opened per ramp-up step")
    g.add_argument("--poll-timeout", type=int, default=55, help="the polls' timeout= (at most 55)")
    g = p.add_argument_group("sendapi")
    g.add_argument("--send-recipients", type=int, default=1000, help="recipients per send request")
    g.add_argument("--send-users", type=int, default=1000, help="users the requests cycle over")
    g.add_argument("--send-connected", type=int, default=1000, help="of those, connected over WebSocket")
    g.add_argument("--send-concurrency", type=int, default=4, help="requests in flight")
    g.add_argument("--send-requests", type=int, default=40, help="requests in all")
    g = p.add_argument_group("resume")
    g.add_argument("--backlog", type=int, default=500, help="items behind the client's since")
    g.add_argument("--resume-rounds", type=int, default=5)
    g = p.add_argument_group("redis2")
    g.add_argument("--redis2-clients", type=int, default=5000, help="clients per process")
    g.add_argument("--redis2-url", default="redis://127.0.0.1:6379/5", help="REDIS_URL of both processes "
                   "(redis2 and drain)")
    g = p.add_argument_group("drain")
    g.add_argument("--drain-clients", type=int, default=10000, help="WebSocket clients on process A")
    g.add_argument("--drain-seconds", type=float, default=10, help="A's NOTIFY_DRAIN_SECONDS")
    p.add_argument("--pause", type=float, default=3.0, help="seconds between runs (sockets drain)")
    p.add_argument("--out", help="JSON results file (default bench/results/<time>-<scenario>.json)")
    p.add_argument("--table", metavar="JSON", help="only print the table of an earlier results file")
    args = p.parse_args()
    if args.table:
        print(table(json.loads(Path(args.table).read_text())["results"]))
        return
    if args.quick:
        if "--clients" not in sys.argv:
            args.clients = "200,1000"
        if "--target" not in sys.argv:
            args.target = "baseline,echo"
        args.announcements, args.interval, args.burst = 3, 0.5, 10
        args.wait_timeout, args.settle = 60, 1.0
    args.baseline_layer = args.layer
    globals()["TRIGGER_TIMEOUT"] = args.trigger_timeout
    raise_nofile()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))

    sizes = [int(x) for x in args.clients.split(",") if x.strip()]
    names = [x.strip() for x in args.target.split(",") if x.strip()]
    bad = [x for x in names if x not in TARGETS]
    if bad or not sizes or min(sizes) < 1:
        p.error(f"unknown target(s) {bad}" if bad else "bad --clients")
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if max(sizes) + 100 > nofile:
        log(f"warning: open-file limit {nofile} is below N={max(sizes)}; connections will fail")
    for tool in ("taskset", "node"):
        if not shutil.which(tool):
            p.error(f"{tool} is not installed")
    if not (LOADGEN / "node_modules" / "ws").exists():
        log("installing the load generator's node modules (npm ci)")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=str(LOADGEN), check=True, timeout=300)
    if args.layer == "redis":
        args.baseline_layer = "redis"

    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else RESULTS / f"{started}-{args.scenario}.json"
    if args.scenario != "fanout":
        import scenarios

        meta = {"started": started, "scenario": args.scenario, "argv": sys.argv, "machine": machine_info(),
                "loadavg_before": Path("/proc/loadavg").read_text().split()[:3]}
        res, tab = scenarios.SCENARIOS[args.scenario](args, sys.modules[__name__])
        meta["args"] = {k: v for k, v in vars(args).items()}
        meta["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
        out.write_text(json.dumps({"meta": meta, "result": res}, indent=1))
        m = meta["machine"]
        print(f"\n{args.scenario}: notify on cpu {args.server_cpus}, clients on cpu {args.gen_cpus}; "
              f"{m['cpus']} x {m['cpu_model']}, Linux {m['kernel']}, Python {m['python']}; "
              f"database {args.notify_database_url.split('@')[-1]}; load {meta['loadavg_before']}\n")
        print(tab)
        print(f"\nraw results: {out}")
        return
    targets, skipped = {}, {}
    for name in names:
        t = TARGETS[name](args, args.port_base + PORTS[name])
        try:
            t.prepare(max(sizes))
            targets[name] = t
        except NotReady as exc:
            skipped[name] = str(exc)
            log(f"{name}: SKIPPED: {exc}")
        except subprocess.TimeoutExpired:
            skipped[name] = "provisioning timed out"

    results = []
    meta = {"started": started, "scenario": args.scenario, "argv": sys.argv, "machine": machine_info(),
            "args": {k: v for k, v in vars(args).items()}}
    for n in sizes:
        for name in names:
            if name in skipped:
                results.append({"target": name, "clients": n, "ok": False, "skipped": skipped[name]})
                continue
            results.append(run_one(targets[name], n, args))
            out.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
            time.sleep(args.pause)
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    m = meta["machine"]
    print(f"\n{args.scenario}: {args.announcements} announcements {args.interval} s apart, burst of {args.burst}; "
          f"server on cpu {args.server_cpus}, generator ({args.workers} workers) on cpu {args.gen_cpus}; "
          f"{m['cpus']} x {m['cpu_model']}, Linux {m['kernel']}, Python {m['python']}, node {m['node']}; "
          f"layer {args.layer}\n")
    print(table(results))
    print(f"\nraw results: {out}")


if __name__ == "__main__":
    main()
