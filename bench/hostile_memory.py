"""Memory of one daphne process under oversize WebSocket messages and HTTP bodies (issue 10).

    . .venv/bin/activate && pip install -r bench/requirements.txt
    python bench/hostile_memory.py                     # 100 concurrent 16 MiB attempts of each kind
    python bench/hostile_memory.py --root /work/main   # the same against another checkout

Starts one ``daphne config.asgi:application`` (from ``--root``, default this checkout) on
a fresh SQLite database, provisions a user with a token, then makes ``--attempts``
concurrent attempts to send a ``--size``-byte WebSocket text message to ``/ws/notify/``
(one frame; the client streams it from one shared buffer, so the client itself stays
small), then as many concurrent ``POST /notify/api/send/`` with a ``--size``-byte body.
Reports the server's RSS (``VmRSS``) before and after each round and its peak during the
round (``VmHWM``, reset through ``/proc/PID/clear_refs`` before the round), in MiB, and
how each attempt ended (close code, HTTP status, or the connection error). Prints one
JSON object last.
"""

import argparse
import asyncio
import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 64 * 1024


def memory(pid: int) -> dict:
    """Return ``{"rss_mib", "peak_mib"}`` (VmRSS, VmHWM) of a process."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        values[name] = value.strip()
    return {"rss_mib": round(int(values["VmRSS"].split()[0]) / 1024, 2),
            "peak_mib": round(int(values["VmHWM"].split()[0]) / 1024, 2)}


def reset_peak(pid: int) -> None:
    """Reset the process's VmHWM to its current RSS (Linux, same user or root)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def text_frame_header(size: int) -> bytes:
    """A masked client text frame header (FIN, opcode 1, 64-bit length) with an
    all-zero masking key, so the payload goes out as it is (RFC 6455 §5.2, §5.3)."""
    return struct.pack("!BBQ", 0x81, 0x80 | 127, size) + b"\0\0\0\0"


async def ws_oversize(port: int, token: str, payload: memoryview, timeout: float = 30) -> str:
    """Open ``/ws/notify/``, read ``hello``, send ``payload`` as one text message.

    Returns:
        ``"close <code>"`` for the server's close frame, else what happened
        (``"eof"``, an exception name).
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /ws/notify/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            return "handshake " + head.split(b"\r\n", 1)[0].decode()
        await read_frame(reader, timeout)  # hello
        writer.write(text_frame_header(len(payload)))
        sending = asyncio.ensure_future(_stream(writer, payload))
        try:
            while True:
                opcode, body = await read_frame(reader, timeout)
                if opcode == 8:
                    return f"close {struct.unpack('!H', body[:2])[0] if len(body) >= 2 else None}"
        finally:
            sending.cancel()
    except asyncio.IncompleteReadError:
        return "eof"
    except (OSError, asyncio.TimeoutError) as exc:
        return type(exc).__name__
    finally:
        writer.close()


async def _stream(writer, payload: memoryview) -> None:
    try:
        for start in range(0, len(payload), CHUNK):
            writer.write(payload[start:start + CHUNK])
            await writer.drain()
    except OSError:
        pass


async def read_frame(reader, timeout: float) -> tuple[int, bytes]:
    """Read one unmasked server frame; return ``(opcode, payload)``."""
    first, second = await asyncio.wait_for(reader.readexactly(2), timeout)
    size = second & 0x7F
    if size == 126:
        size = struct.unpack("!H", await reader.readexactly(2))[0]
    elif size == 127:
        size = struct.unpack("!Q", await reader.readexactly(8))[0]
    return first & 0x0F, await asyncio.wait_for(reader.readexactly(size), timeout)


async def http_oversize(port: int, token: str, payload: memoryview, timeout: float = 30) -> str:
    """POST ``payload`` to ``/notify/api/send/`` with its Content-Length; return
    ``"status <code>"`` or what happened."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"POST /notify/api/send/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
        )
        sending = asyncio.ensure_future(_stream(writer, payload))
        try:
            line = await asyncio.wait_for(reader.readline(), timeout)
        finally:
            sending.cancel()
        return f"status {line.split()[1].decode()}" if line else "eof"
    except (OSError, asyncio.TimeoutError) as exc:
        return type(exc).__name__
    finally:
        writer.close()


async def round_of(pid: int, attempts: int, attempt) -> dict:
    """Run ``attempts`` concurrent calls of ``attempt()``; return memory and outcomes."""
    await asyncio.sleep(1)
    before = memory(pid)
    reset_peak(pid)
    outcomes = Counter(await asyncio.gather(*(attempt() for _ in range(attempts))))
    peak = memory(pid)["peak_mib"]
    await asyncio.sleep(2)
    return {"rss_before_mib": before["rss_mib"], "peak_mib": peak, "rss_after_mib": memory(pid)["rss_mib"],
            "peak_growth_mib": round(peak - before["rss_mib"], 2), "outcomes": dict(outcomes)}


async def run(args) -> dict:
    root = Path(args.root).resolve()
    workdir = Path(tempfile.mkdtemp(prefix="hostile-memory-"))
    # The caps on connections per user and handshakes per address would refuse most
    # attempts before they send anything: lift them, to measure the message limits.
    (workdir / "hostile_settings.py").write_text(
        "from config.settings import *  # noqa\n"
        "NOTIFY = {'MAX_HANDSHAKES_PER_CLIENT': 0, 'MAX_CONNECTIONS_PER_USER': 100_000}\n"
    )
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="hostile_settings", PYTHONPATH=str(workdir), PYTHONUNBUFFERED="1",
               DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost", DATABASE_URL=f"sqlite:///{workdir / 'bench.sqlite3'}")
    env.pop("REDIS_URL", None)
    plain = dict(env, DJANGO_SETTINGS_MODULE="config.settings")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=root, env=plain, check=True)
    token = _provision_in(root, plain)
    port = free_port()
    log = open(workdir / "daphne.log", "wb")
    server = _start(root, env, port, log)
    payload = memoryview(b"x" * args.size)
    try:
        # Warm up: one accepted connection and one small refusal load the code paths.
        await ws_oversize(port, token, memoryview(b"x" * 70_000))
        result = {"root": str(root), "size": args.size, "attempts": args.attempts,
                  "websocket": await round_of(server.pid, args.attempts, lambda: ws_oversize(port, token, payload)),
                  "http": await round_of(server.pid, args.attempts, lambda: http_oversize(port, token, payload))}
        result["alive"] = (await ws_oversize(port, token, memoryview(b'{"type":"ping"}'), timeout=5)) != "eof"
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


def _provision_in(root: Path, env: dict) -> str:
    script = ("import django; django.setup()\nfrom django.contrib.auth import get_user_model\n"
              "from notify.models import ApiToken\n"
              "u, _ = get_user_model().objects.get_or_create(username='attacker')\n"
              "print(ApiToken.objects.issue(user=u, name='bench'))")
    out = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(root: Path, env: dict, port: int, log) -> subprocess.Popen:
    command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"]
    proc = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.1)
    raise SystemExit("daphne did not listen within 30 s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attempts", type=int, default=100, help="concurrent attempts per round (default 100)")
    parser.add_argument("--size", type=int, default=16 * 1024 * 1024, help="message and body size in bytes")
    parser.add_argument("--root", default=str(ROOT), help="checkout to run daphne from (default this one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    for kind in ("websocket", "http"):
        r = result[kind]
        print(f"{kind}: {args.attempts} x {args.size} B: RSS {r['rss_before_mib']} -> peak {r['peak_mib']} -> "
              f"{r['rss_after_mib']} MiB; outcomes {r['outcomes']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
