"""Trigger announcements on notify from a Django-enabled process (bench helper).

    DJANGO_SETTINGS_MODULE=config.settings REDIS_URL=redis://127.0.0.1:6379/0 \
        python bench/notify_trigger.py

Reads JSON lines ``{"seq": S, "count": C, "t": T}`` on stdin; for each it calls
``notify.api.announce(title="bench <seq>", body='{"seq":<seq>,"t":<ms since epoch>}')``
C times back to back (seqs S..S+C-1; the first uses T, the trigger time, when given,
the others are stamped just before their own call) and answers one JSON line
``{"ok": true, "sent": C, "ids": [...]}`` (or ``{"ok": false, "error": ...}``).

The pushes reach the daphne process only through a shared channel layer, so this needs
``REDIS_URL`` (the in-memory layer of a separate process reaches no one); without it
the runner uses the service API (``POST /notify/api/announce/``) instead.
Prints ``{"ready": true}`` first, or exits 3 when the notify app is not ready.
"""

import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main():
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    if not os.environ.get("REDIS_URL"):
        print("warning: REDIS_URL is not set; announcements will not reach daphne", file=sys.stderr)
    try:
        import django

        django.setup()
        from notify.api import announce
    except Exception as exc:  # noqa: BLE001
        print(f"notify app not ready: {exc!r}", file=sys.stderr)
        sys.exit(3)
    print(json.dumps({"ready": True}), flush=True)
    for _ in range(100_000):  # bounded: one line per trigger
        line = sys.stdin.readline()
        if not line:
            break
        try:
            cmd = json.loads(line)
            seq, count, t = int(cmd["seq"]), int(cmd.get("count", 1)), cmd.get("t")
            ids = []
            for i in range(count):
                stamp = float(t) if (i == 0 and t is not None) else time.time() * 1000.0
                a = announce(title=f"bench {seq + i}", body=json.dumps({"seq": seq + i, "t": stamp}))
                ids.append(getattr(a, "id", None) or getattr(a, "pk", None))
            print(json.dumps({"ok": True, "sent": count, "ids": ids}), flush=True)
        except Exception as exc:  # noqa: BLE001
            print(json.dumps({"ok": False, "error": repr(exc)}), flush=True)


if __name__ == "__main__":
    main()
