"""``manage.py notify_escalate``: push by Web Push what no device acknowledged in time.

Runs escalation passes (notify.escalation) every ``WEBPUSH_POLL_SECONDS`` until SIGTERM
or SIGINT, then exits 0 once the pushes in flight are answered (each at most
``WEBPUSH_TIMEOUT_SECONDS``). ``--once``: one pass over what is due now, then exit 0.
Without a VAPID key it exits 0 at once, saying Web Push is off. On PostgreSQL one job
runs at a time (a session advisory lock); a second one waits.
"""

import signal
import threading

from django.core.management.base import BaseCommand
from django.db import connection

from notify.escalation import Escalator
from notify.webpush import config

# Session advisory lock key of the escalation job ("ne" in ASCII, then 1).
_LOCK = (0x6E65, 1)


class Command(BaseCommand):
    help = "Push unacknowledged notifications by Web Push (runs until SIGTERM; --once: one pass)."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="one pass over what is due, then exit")

    def handle(self, *args, **options):
        cfg = config()
        if cfg is None:
            self.stdout.write("Web Push is off (NOTIFY_WEBPUSH_VAPID_PRIVATE_KEY is not set); nothing to do.")
            return
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
        escalator = Escalator(cfg, stop)
        try:
            if not self._lock(stop, wait=not options["once"]):
                self.stdout.write("Another notify_escalate holds the lock; nothing done.")
                return
            self.stdout.write(f"notify_escalate: pushing items unacknowledged after {cfg.after_seconds} s")
            total = escalator.run(once=options["once"])
            self.stdout.write(f"notify_escalate: {total.sent} sent, {total.gone} gone, {total.failed} failed")
        finally:
            escalator.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._unlock()

    def _lock(self, stop: threading.Event, *, wait: bool) -> bool:
        if connection.vendor != "postgresql":
            return True
        while True:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", list(_LOCK))
                if cursor.fetchone()[0]:
                    return True
            if not wait or stop.wait(1.0):
                return False

    def _unlock(self) -> None:
        if connection.vendor == "postgresql" and connection.connection is not None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock_all()")
