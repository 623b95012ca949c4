"""A TCP load balancer for end-to-end tests, like nginx with an active health check.

New connections go to the first backend, in the order given, whose ``readyz`` answered
200 at the last check (every ``interval`` seconds); a backend that refuses the TCP
connection is skipped. It counts open and accepted connections per backend.
"""

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class Backend:
    name: str
    port: int
    ready: bool = False
    open: int = 0  # connections open now
    accepted: list[float] = field(default_factory=list)  # time.monotonic() of each


class Balancer:
    def __init__(self, backends: list[Backend], interval: float = 0.1, readyz: str = "/notify/readyz"):
        self.backends = backends
        self.interval = interval
        self.readyz = readyz
        self.port = None
        self.refused = 0  # connections no backend took
        self._server = None
        self._checker = None
        self._pipes: set[asyncio.Task] = set()

    async def start(self) -> "Balancer":
        await self.check()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        self._checker = asyncio.ensure_future(self._check_loop())
        return self

    async def close(self) -> None:
        self._checker.cancel()
        self._server.close()
        for task in list(self._pipes):
            task.cancel()

    async def check(self) -> None:
        for backend in self.backends:
            backend.ready = await self._ready(backend)

    async def _check_loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.check()

    async def _ready(self, backend: Backend) -> bool:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", backend.port), 1)
        except (OSError, asyncio.TimeoutError):
            return False
        try:
            writer.write(f"GET {self.readyz} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
            status = await asyncio.wait_for(reader.readline(), 2)
            return status.split()[1:2] == [b"200"]
        except (OSError, asyncio.TimeoutError, IndexError):
            return False
        finally:
            writer.close()

    async def _handle(self, client_reader, client_writer) -> None:
        for backend in self.backends:
            if not backend.ready:
                continue
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", backend.port)
            except OSError:
                continue
            break
        else:
            self.refused += 1
            client_writer.close()
            return
        backend.open += 1
        backend.accepted.append(time.monotonic())
        task = asyncio.current_task()
        self._pipes.add(task)
        try:
            await asyncio.wait(
                [asyncio.ensure_future(_pipe(client_reader, writer)), asyncio.ensure_future(_pipe(reader, client_writer))],
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            backend.open -= 1
            self._pipes.discard(task)
            for w in (writer, client_writer):
                w.close()


async def _pipe(reader, writer) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
