"""``manage.py notify_token``: issue or revoke API tokens and service keys (docs/protocol.md §7)."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from notify import services
from notify.models import ApiToken


class Command(BaseCommand):
    help = (
        "Print a new personal API token for USERNAME (last line), a new service key "
        "with --service NAME, or revoke either with --revoke TOKEN."
    )

    def add_arguments(self, parser):
        parser.add_argument("username", nargs="?",
                            help="owner of a new personal token, by the user model's USERNAME_FIELD "
                                 "(a username, or e.g. an email address)")
        parser.add_argument("--name", default="", help="a label for the personal token")
        parser.add_argument("--service", metavar="NAME", help="issue a service key for NAME")
        parser.add_argument("--revoke", metavar="TOKEN", help="revoke this token or key")

    def handle(self, *args, **options):
        chosen = [o for o in ("username", "service", "revoke") if options[o]]
        if len(chosen) != 1:
            raise CommandError("give exactly one of USERNAME, --service NAME or --revoke TOKEN")
        if options["revoke"]:
            if services.revoke_token(options["revoke"]) is None:
                raise CommandError("revoke: no live token or key has that value")
            self.stdout.write("revoked")
            return
        if options["service"]:
            name = options["service"].strip()
            if not name:
                raise CommandError("service: the name must not be empty")
            self.stdout.write(f"Service key for {name} (shown once; only its hash is stored):")
            self.stdout.write(ApiToken.objects.issue(name=name, service=True))
            return
        User = get_user_model()
        user = User.objects.filter(**{User.USERNAME_FIELD: options["username"]}).first()
        if user is None:
            raise CommandError(f"username: unknown user {options['username']!r}")
        if not user.is_active:
            raise CommandError(f"username: user {options['username']!r} is inactive")
        self.stdout.write(f"API token for {user.get_username()} (shown once; only its hash is stored):")
        self.stdout.write(ApiToken.objects.issue(user=user, name=options["name"]))
