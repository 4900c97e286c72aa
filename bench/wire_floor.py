"""The floor under the delivery path: bare asyncio protocols sending pre-encoded POSTs.

Not a test, and not mtping: N requests of the size mtping sends, over C keep-alive connections
to the same nginx sink as `bench/delivery_throughput.py`, each connection a task awaiting one
future per response (no parsing beyond the end of the head, no metrics, no retries). What is
left of mtping's per-event cost above this figure is its own Python work. Prints events/s and
the client's user and system CPU per event.

    .venv/bin/python -m bench.wire_floor --events 50000 --connections 64
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time

import uvloop

from bench.delivery_throughput import nginx_sink

REQUEST = (
    b"POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: floor\r\nce-id: %08d\r\n"
    b"ce-specversion: 1.0\r\nce-type: dev.knative.sources.ping\r\n"
    b"ce-source: /apis/v1/namespaces/a/pingsources/b\r\nce-time: 2026-01-01T00:00:00Z\r\n"
    b"content-type: application/json\r\nContent-Length: 27\r\n\r\n"
    b'{"message": "Hello world!"}'
)


class Connection(asyncio.Protocol):
    """One keep-alive connection: `send` writes a request, its future ends with the response
    head (nginx's 202 carries no body)."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def send(self, data: bytes) -> asyncio.Future[None]:
        assert self._transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(data)
        return self._waiter

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if b"\r\n\r\n" in self._buffer and self._waiter is not None:
            self._buffer = b""
            self._waiter.set_result(None)


async def drive(connection: Connection, numbers: list[int]) -> None:
    while numbers:
        await connection.send(REQUEST % numbers.pop())


async def measure(url: str, events: int, connections: int) -> None:
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    loop = asyncio.get_running_loop()
    opened = [
        await loop.create_connection(Connection, "127.0.0.1", port) for _ in range(connections)
    ]
    numbers = list(range(events))
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    await asyncio.gather(*(drive(connection, numbers) for _, connection in opened))
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    user = (after.ru_utime - before.ru_utime) / events * 1e6
    system = (after.ru_stime - before.ru_stime) / events * 1e6
    print(f"connections={connections} events={events}")
    print(f"  throughput  {events / seconds:.0f} events/s")
    print(f"  client CPU  {user:.1f} us user + {system:.1f} us system per event")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    with nginx_sink() as sink:
        if (os.cpu_count() or 1) >= 2:
            os.sched_setaffinity(0, {0})  # the sink is pinned to the last CPU
        uvloop.run(measure(sink.url, args.events, args.connections))
        requests, distinct = sink.stats()
        print(f"  sink saw    {requests} requests, {distinct} distinct ce-ids")


if __name__ == "__main__":
    main()
