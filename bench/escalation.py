#!/usr/bin/env python
"""Escalation throughput (issue 14): Web Push subscriptions pushed per second.

    DATABASE_URL=postgres://... python bench/escalation.py --subscriptions 5000

Migrates the database named by DATABASE_URL (use a scratch one: the bench adds users),
starts a fake push service (a separate process on 127.0.0.1 answering 201 to every
POST and counting them), gives each of N fresh users one subscription, stores one
announcement, makes it due, and times ``Escalator.run(once=True)``: every push is
encrypted (RFC 8291, pywebpush), VAPID-signed and POSTed for real. Prints
``subscriptions pushed/s`` and the settings used.
"""

import argparse
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FAKE_SERVICE = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
count = 0
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        global count
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        count += 1
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def do_GET(self):
        body = str(count).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
server = ThreadingHTTPServer(("127.0.0.1", 0), H)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscriptions", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rate", type=float, default=0, help="pushes/s cap (0: none)")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.utils import timezone

    from notify import services
    from notify.escalation import Escalator
    from notify.models import Entry, EscalationState, PushSubscription
    from notify.webpush import config, generate_key_pair
    from tests.pushhelpers import BrowserKeys

    call_command("migrate", verbosity=0)
    fake = subprocess.Popen([sys.executable, "-c", FAKE_SERVICE], stdout=subprocess.PIPE, text=True)
    port = int(fake.stdout.readline())
    try:
        private, _ = generate_key_pair()
        settings.NOTIFY = {
            "WEBPUSH_VAPID_PRIVATE_KEY": private, "WEBPUSH_AFTER_SECONDS": 0,
            "WEBPUSH_ALLOW_INSECURE_ENDPOINTS": True, "WEBPUSH_WORKERS": args.workers,
            "WEBPUSH_BATCH_SIZE": args.batch, "WEBPUSH_RATE": args.rate,
        }
        User = get_user_model()
        tag = f"bench{int(time.time())}"
        joined = timezone.now() - timedelta(days=1)
        users = User.objects.bulk_create(
            [User(username=f"{tag}-{i}", date_joined=joined, password="!") for i in range(args.subscriptions)],
            batch_size=2000,
        )
        keys = BrowserKeys()
        latest = Entry.objects.order_by("-id").values_list("id", flat=True).first() or 0
        PushSubscription.objects.bulk_create(
            [PushSubscription(user=u, endpoint=f"http://127.0.0.1:{port}/push/{tag}/{u.pk}", p256dh=keys.p256dh,
                              auth=keys.auth, pushed_through=latest) for u in users],
            batch_size=2000,
        )
        EscalationState.objects.update_or_create(pk=1, defaults={"horizon": latest})
        # Users of earlier runs keep their subscriptions: drop them from this run.
        PushSubscription.objects.exclude(endpoint__contains=f"/push/{tag}/").delete()
        announcement = services.announce(title="Bench announcement", body="x" * 200)
        escalator = Escalator(config())
        started = time.perf_counter()
        result = escalator.run(once=True)
        elapsed = time.perf_counter() - started
        escalator.close()
        with __import__("urllib.request").request.urlopen(f"http://127.0.0.1:{port}/") as response:
            received = int(response.read())
        print(f"announcement {announcement.pk}: {result.sent} pushed ({received} received by the fake push "
              f"service, {result.failed} failed) in {elapsed:.2f} s = {result.sent / elapsed:,.0f} "
              f"subscriptions pushed/s (workers={args.workers}, batch={args.batch}, rate cap={args.rate or 'none'}, "
              f"database={settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]})")
        User.objects.filter(username__startswith=f"{tag}-").delete()
    finally:
        fake.terminate()
        fake.wait()


if __name__ == "__main__":
    main()
