"""The baseline: what a plain Channels project does for a broadcast.

Every connection joins one group, ``everyone``; an announcement is one ``group_send``,
which the layer turns into one message per connection, each handled by that
connection's consumer (``dispatch`` -> ``notification``) and JSON-encoded there.
"""

import json
import time

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer

GROUP = "everyone"


class BroadcastConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "cursor": 0, "unread": 0, "heartbeat": 25})

    async def disconnect(self, code):
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def receive_json(self, content, **kwargs):
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def notification(self, event):
        await self.send_json({"type": "notification", "notification": event["notification"]})


_next_id = 0


async def announce(seq, count, t=None):
    """``group_send`` ``count`` announcements, seqs ``seq..seq+count-1``, back to back.

    ``t`` (ms since the epoch) is the trigger time of the first; the others are stamped
    just before their own ``group_send``.
    """
    global _next_id
    layer = get_channel_layer()
    for i in range(count):
        _next_id += 1
        stamp = t if (i == 0 and t is not None) else time.time() * 1000.0
        await layer.group_send(
            GROUP,
            {
                "type": "notification",
                "notification": {
                    "id": _next_id,
                    "kind": "announcement",
                    "title": "bench",
                    "body": json.dumps({"seq": seq + i, "t": stamp}),
                    "level": "info",
                    "url": "",
                    "data": {},
                },
            },
        )
    return count
