"""How long a server keeps a connection whose request headers never complete (issue 10).

    python bench/slow_headers.py --port 8000                  # one byte every 5 s, up to 180 s
    python bench/slow_headers.py --port 8000 --keep-alive     # after one complete request
    python bench/slow_headers.py --port 8000 --body           # complete headers, then a slow body

Connects to ``127.0.0.1:PORT``, sends ``GET /notify/poll/ HTTP/1.1`` and then one byte
of a never-ending header every ``--interval`` seconds (a Slowloris client). With
``--keep-alive`` it first sends a complete request and reads its answer, then drips the
next request on the same connection. With ``--body`` it sends the complete headers of a
``POST /notify/api/send/`` with ``Content-Length: 1000`` and drips the body. Prints one JSON object: whether and after how many
seconds the server closed the connection (``"closed_after_s"``), or that it was still
open after ``--limit`` seconds.
"""

import argparse
import json
import socket
import time


def drip(port: int, interval: float, limit: float, keep_alive: bool, body: bool = False) -> dict:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        if keep_alive:
            sock.sendall(b"GET /notify/poll/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            sock.settimeout(10)
            sock.recv(65536)
        started = time.monotonic()
        payload = b"GET /notify/poll/ HTTP/1.1\r\nX-Slow: " + b"a" * 100_000
        if body:
            sock.sendall(b"POST /notify/api/send/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n")
            payload = b"x" * 1000
        sock.settimeout(interval)
        sent = 0
        while time.monotonic() - started < limit:
            try:
                sock.sendall(payload[sent:sent + 1])
                sent += 1
                if sock.recv(4096) == b"":
                    return {"closed_after_s": round(time.monotonic() - started, 1), "bytes_sent": sent}
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                return {"closed_after_s": round(time.monotonic() - started, 1), "bytes_sent": sent}
        return {"closed_after_s": None, "open_after_s": limit, "bytes_sent": sent}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between bytes (default 5)")
    parser.add_argument("--limit", type=float, default=180.0, help="give up after this many seconds")
    parser.add_argument("--keep-alive", action="store_true", help="drip the second request of a connection")
    parser.add_argument("--body", action="store_true", help="complete headers, then drip the request body")
    args = parser.parse_args()
    print(json.dumps({**vars(args), **drip(args.port, args.interval, args.limit, args.keep_alive, args.body)}))


if __name__ == "__main__":
    main()
