"""``manage.py notify_announce``: post an announcement and push it (docs/protocol.md §7)."""

from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from notify import services
from notify.exceptions import InvalidParameter


class Command(BaseCommand):
    help = "Post an announcement to every active user or a group; prints its stream id."

    def add_arguments(self, parser):
        parser.add_argument("--title", required=True)
        parser.add_argument("--body", default="")
        parser.add_argument("--level", default="info")
        parser.add_argument("--url", default="")
        parser.add_argument("--group", metavar="NAME", help="limit the audience to this group")
        parser.add_argument("--expires-at", metavar="ISO8601", help="e.g. 2026-12-31T00:00:00Z")

    def handle(self, *args, **options):
        audience = None
        if options["group"] is not None:
            audience = Group.objects.filter(name=options["group"]).first()
            if audience is None:
                raise CommandError(f"group: unknown group {options['group']!r}")
        try:
            announcement = services.announce(
                title=options["title"], body=options["body"], level=options["level"],
                url=options["url"], audience=audience,
                expires_at=services.parse_expires_at(options["expires_at"]),
            )
        except InvalidParameter as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(str(announcement.pk))
