"""``manage.py notify_send``: store a notification for users and push it (docs/protocol.md §7)."""

from django.core.management.base import BaseCommand, CommandError

from notify import services
from notify.exceptions import InvalidParameter


class Command(BaseCommand):
    help = "Store a notification for one or more users and push it live; prints the ids."

    def add_arguments(self, parser):
        parser.add_argument("--to", action="append", required=True, metavar="USERNAME",
                            help="recipient, by the user model's USERNAME_FIELD, e.g. a username "
                                 "or an email address (repeatable)")
        parser.add_argument("--title", required=True)
        parser.add_argument("--body", default="")
        parser.add_argument("--kind", default="message")
        parser.add_argument("--level", default="info")
        parser.add_argument("--url", default="")

    def handle(self, *args, **options):
        # Names (USERNAME_FIELD) only: a numeric username must not be read as a user id.
        try:
            notifications, _ = services.send(
                [str(name) for name in options["to"]],
                title=options["title"], body=options["body"], kind=options["kind"],
                level=options["level"], url=options["url"], usernames=True,
            )
        except InvalidParameter as exc:
            raise CommandError(str(exc)) from exc
        for notification in notifications:
            self.stdout.write(str(notification.pk))
