"""The transports of a user's stream: WebSocket (``websocket``), long-poll
(``longpoll``) and Server-Sent Events (``sse``). Each holds a
``notify.realtime.hub.Connection`` (``link``) that the hub registers."""
