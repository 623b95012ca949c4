"""Provision the notify target of the bench: users, per-user API tokens, a service key.

    DJANGO_SETTINGS_MODULE=config.settings python bench/notify_provision.py \
        --users 10000 --tokens-out bench/results/notify-tokens.txt \
        --service-key-out bench/results/notify-service-key.txt

Runs the migrations, bulk-creates the users ``bench0`` .. ``bench<N-1>`` (the ones that do
not exist yet, active, unusable password), issues one fresh personal token per user with
``ApiToken.objects.issue(user=user, name="bench")`` (bench tokens of earlier runs are
deleted first) and writes the raw tokens one per line, user ``bench<i>`` on line ``i``.
The service key (for ``POST /notify/api/announce/``) comes from
``manage.py notify_token --service bench``; when that is not available the key file is
not written and the runner falls back to the trigger script (needs ``REDIS_URL``).

Exit status 3 with a reason on stderr when the notify app is not ready (Django cannot
start with ``config.settings``, or ``notify.models.ApiToken`` does not exist).
"""

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def not_ready(reason):
    print(f"notify app not ready: {reason}", file=sys.stderr)
    sys.exit(3)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--tokens-out", required=True)
    parser.add_argument("--service-key-out")
    parser.add_argument("--prefix", default="bench")
    parser.add_argument("--no-migrate", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.users <= 100_000:
        parser.error("--users must be between 1 and 100000")

    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    t0 = time.monotonic()
    try:
        import django

        django.setup()
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        not_ready(f"django.setup() with {os.environ['DJANGO_SETTINGS_MODULE']} failed: {exc!r}")

    from django.core.management import call_command

    if not args.no_migrate:
        try:
            call_command("migrate", interactive=False, verbosity=0)
        except Exception as exc:  # noqa: BLE001
            not_ready(f"migrate failed: {exc!r}")

    try:
        from notify.models import ApiToken
    except Exception as exc:  # noqa: BLE001
        not_ready(f"cannot import notify.models.ApiToken: {exc!r}")
    if not hasattr(ApiToken.objects, "issue"):
        not_ready("ApiToken.objects.issue(user=..., name=...) does not exist")

    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.db import transaction

    User = get_user_model()
    names = [f"{args.prefix}{i}" for i in range(args.users)]
    existing = set(
        User.objects.filter(username__startswith=args.prefix).values_list("username", flat=True)
    )
    unusable = make_password(None)
    missing = [User(username=n, password=unusable, is_active=True) for n in names if n not in existing]
    for start in range(0, len(missing), 2000):
        User.objects.bulk_create(missing[start : start + 2000])
    User.objects.filter(username__in=names, is_active=False).update(is_active=True)
    users = {u.username: u for u in User.objects.filter(username__in=names)}
    t_users = time.monotonic()

    try:
        ApiToken.objects.filter(user__username__startswith=args.prefix, name="bench").delete()
    except Exception as exc:  # noqa: BLE001 - best effort only
        print(f"warning: could not delete old bench tokens: {exc!r}", file=sys.stderr)

    tokens = []
    try:
        with transaction.atomic():
            for n in names:
                raw = ApiToken.objects.issue(user=users[n], name="bench")
                if not isinstance(raw, str):  # tolerate (token, raw) style returns
                    raw = next((x for x in raw if isinstance(x, str)), None) if isinstance(raw, tuple) else None
                if not raw:
                    not_ready("ApiToken.objects.issue() did not return the raw token string")
                tokens.append(raw)
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001
        not_ready(f"ApiToken.objects.issue(user=..., name='bench') failed: {exc!r}")
    Path(args.tokens_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.tokens_out).write_text("\n".join(tokens) + "\n")
    t_tokens = time.monotonic()

    service_key = None
    if args.service_key_out:
        buf = io.StringIO()
        try:
            call_command("notify_token", "--service", "bench", stdout=buf)
            lines = [line.strip() for line in buf.getvalue().splitlines() if line.strip()]
            service_key = lines[-1] if lines else None
        except BaseException as exc:  # noqa: BLE001 - CommandError raises SystemExit via call_command? no, but be safe
            print(f"warning: no service key (manage.py notify_token --service): {exc!r}", file=sys.stderr)
        out = Path(args.service_key_out)
        if service_key:
            out.write_text(service_key + "\n")
        elif out.exists():
            out.unlink()

    print(
        json.dumps(
            {
                "users": len(users),
                "created": len(missing),
                "tokens": len(tokens),
                "service_key": bool(service_key),
                "users_s": round(t_users - t0, 2),
                "tokens_s": round(t_tokens - t_users, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
