"""ASGI entry point of the example site: ``daphne config.asgi:application``.

notify's application (``notify.asgi.get_application``): the WebSocket at
``/ws/notify/``, long-poll and SSE at ``/notify/poll/`` and ``/notify/stream/`` (Channels
consumers, ahead of Django), and Django for everything else (pages, admin, inbox and
send APIs, static files through WhiteNoise).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from notify.asgi import get_application  # noqa: E402

application = get_application(django_asgi_app)
