"""A recording HTTP sink for tests: every POST is queued (headers and body) and answered 202.

Its job: stand in for a CloudEvents receiver on a free loopback port so a test can await the
next delivery. It must never interpret the events (tests assert on what was recorded).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from tests.harness.process import free_port


@dataclass(frozen=True, slots=True)
class Delivery:
    """One request the sink received."""

    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


@dataclass(frozen=True, slots=True)
class RecordingSink:
    """Where the sink listens and what it has received, in arrival order."""

    url: str
    deliveries: asyncio.Queue[Delivery]


@asynccontextmanager
async def recording_sink() -> AsyncIterator[RecordingSink]:
    """Serve a recording sink on 127.0.0.1 for the duration of the `async with` block."""
    deliveries: asyncio.Queue[Delivery] = asyncio.Queue()

    async def record(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {name.lower(): value for name, value in request.headers.items()}
        deliveries.put_nowait(Delivery(request.path, headers, body))
        return web.Response(status=202)

    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield RecordingSink(url=f"http://127.0.0.1:{port}/", deliveries=deliveries)
    finally:
        await runner.cleanup()
