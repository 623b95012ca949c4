"""``manage.py notify_webpush_keys``: print a new VAPID key pair for Web Push."""

from django.core.management.base import BaseCommand

from notify.webpush import generate_key_pair


class Command(BaseCommand):
    help = (
        "Print a new VAPID key pair: the line NOTIFY_WEBPUSH_VAPID_PRIVATE_KEY=<base64url> for the "
        "environment, then the public key (the browsers' applicationServerKey, served by the app)."
    )

    def handle(self, *args, **options):
        private, public = generate_key_pair()
        self.stdout.write(f"NOTIFY_WEBPUSH_VAPID_PRIVATE_KEY={private}")
        self.stdout.write(f"# public key (applicationServerKey): {public}")
