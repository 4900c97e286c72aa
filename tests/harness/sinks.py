"""HTTP sinks for tests: a recording CloudEvents receiver and a black hole.

Its job: receive what an adapter sends on 127.0.0.1 and remember the arrival time (wall clock,
so it compares with `ce-time`), headers and body of every request; answer with a status chosen
per request by the test. The black hole accepts connections and never answers, the worst sink
a tenant can point at. Neither parses CloudEvents: tests assert on the raw wire.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from aiohttp import web
from multidict import CIMultiDict


@dataclass(frozen=True, slots=True)
class Received:
    arrived: float
    headers: CIMultiDict[str]
    body: bytes

    @property
    def ce_time(self) -> datetime:
        return datetime.fromisoformat(self.headers["ce-time"])

    @property
    def lateness(self) -> float:
        """Arrival minus the scheduled instant the event carries, in seconds."""
        return self.arrived - self.ce_time.timestamp()


Responder = Callable[[Received, list[Received]], int]


def always(status: int) -> Responder:
    return lambda _request, _history: status


@dataclass
class RecordingSink:
    """Records every POST; `respond(request, history)` picks each answer's status."""

    respond: Responder = field(default=always(202))
    received: list[Received] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None
    _arrival: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def start(self) -> RecordingSink:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        received = Received(time.time(), CIMultiDict(request.headers), await request.read())
        status = self.respond(received, self.received)
        async with self._arrival:
            self.received.append(received)
            self._arrival.notify_all()
        return web.Response(status=status)

    def from_source(self, name: str) -> list[Received]:
        return [r for r in self.received if r.headers.get("ce-source", "").endswith(f"/{name}")]

    async def wait_for(
        self, predicate: Callable[[list[Received]], bool], *, timeout: float
    ) -> None:
        """Wait until `predicate(received)` holds; TimeoutError after `timeout` seconds."""
        async with asyncio.timeout(timeout), self._arrival:
            await self._arrival.wait_for(lambda: predicate(self.received))


class BlackHole:
    """Accepts TCP connections, reads what is sent, and never answers."""

    def __init__(self) -> None:
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.url = ""

    async def start(self) -> BlackHole:
        self._server = await asyncio.start_server(self._swallow, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/"
        return self

    async def _swallow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        while await reader.read(65536):
            pass

    async def stop(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
