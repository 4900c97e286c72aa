"""The lean HTTP/1.1 client: keep-alive connections per origin, one asyncio Protocol each.

Connections are pooled per origin and TLS context (the trust they were verified with). A
connection carries one request at a time (no pipelining): the prepared bytes go out in one
write, `wire.ResponseParser` frames the response as it arrives, and its body is discarded.
After a complete response the connection goes back to its origin's pool unless the response
or the server said otherwise (`Connection: close`, HTTP/1.0 without keep-alive, a body ended by
the close, stray bytes); the most recently used idle connection is taken first, and one idle
longer than `keepalive` seconds is closed (checked when taken, and by a sweep). Works on uvloop
and on asyncio's own loop.

Covered: http and https URLs without user info; hosts as IPv4, IPv6 or DNS names (lookups
cached `dns_ttl` seconds, concurrent lookups shared, addresses tried in order); TLS through
the `ssl.SSLContext` the Sender gives (system CAs, or those plus the sink's CACerts), with the
URL's host as SNI and for the hostname check. Not covered, so `sending.py` gives them to the
aiohttp client: URLs with `user:password@` (aiohttp turns them into Basic credentials); and
every request when `--http-client aiohttp`. Neither client follows redirects or uses proxies.

The replay rule (the keep-alive race): a server may close an idle connection just as we send
on it. A connection already closed when taken is simply discarded. If the request went out on
a *reused* connection and the connection ended (EOF or reset) before a single byte of a
response came back, the request is sent once more on a *new* connection, within the same
attempt: not counted as an attempt, no backoff. That is what a server closing an idle
connection looks like, and then the request was never processed. It is also what a server that
read the request, processed it and crashed before answering looks like; then the sink gets the
event twice, with the same `ce-id`. We accept that duplicate: a duplicate is better than a
loss, and the retry policy would resend the event anyway, only later. A failure on a new
connection, or after part of a response, is never replayed here: it fails the attempt.

Errors leave as DeliveryError subclasses raised `from` the OS, ssl or wire error; the caller's
timeout (TimeoutError) and cancellation pass through and close the connection in use, whose
state is then unknown. Records no metrics; never sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import os
import socket
import ssl
from collections import deque
from typing import Final, cast

from mtping.delivery.errors import DeliveryError, SinkTLSError, SinkUnreachable
from mtping.delivery.preparing import Origin, Route
from mtping.delivery.wire import Response, ResponseParser, WireError

# Lookups kept at most; the oldest is dropped past this.
_DNS_CACHE_SIZE: Final = 8192
# Seconds of deadlines sharing one timer: a response timeout fires at most this late.
_DEADLINE_RESOLUTION: Final = 0.01


_Watched = tuple["_Connection", "asyncio.Future[Response]"]
# Connections are pooled per origin and TLS context: one verified against a sink's CACerts
# must never carry a send that trusts only the system CAs, and the other way round.
_PoolKey = tuple[Origin, ssl.SSLContext | None]


class _Disconnected(Exception):
    """Internal: the connection ended before the response was complete."""

    def __init__(self, *, response_started: bool, cause: BaseException | None) -> None:
        super().__init__("server disconnected")
        self.response_started = response_started
        self.cause = cause


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; `send` writes a request and returns its response's future."""

    def __init__(self, loop: asyncio.AbstractEventLoop, open_set: set[_Connection]) -> None:
        self._loop = loop
        self._open_set = open_set
        self._transport: asyncio.Transport | None = None
        self._parser = ResponseParser()
        self._waiter: asyncio.Future[Response] | None = None
        self.closed = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not a check: uvloop's transports do not subclass asyncio.Transport.
        self._transport = cast(asyncio.Transport, transport)
        self._open_set.add(self)

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None:
            self.close()  # Bytes nobody asked for: this stream cannot be trusted any more.
            return
        try:
            response = self._parser.feed(data)
        except WireError as exc:
            self._settle(exc)
            self.close()
            return
        if response is not None:
            self._settle(response)

    def eof_received(self) -> bool:
        if self._waiter is not None:
            try:
                self._settle(self._parser.feed_eof())
            except WireError:
                self._settle(self._disconnected(None))
        return False  # Close our side too: a half-closed HTTP connection is of no use.

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._open_set.discard(self)
        if self._waiter is not None:
            self._settle(self._disconnected(exc))

    @property
    def reusable(self) -> bool:
        return not self.closed and self._transport is not None and not self._transport.is_closing()

    def send(
        self, data: bytes, *, deadline: float | None, deadlines: _Deadlines
    ) -> asyncio.Future[Response]:
        """Send one request; a future of its response, TimeoutError past `deadline`, or
        _Disconnected. (A plain function returning the future: one coroutine less per send.)"""
        if self._transport is None or not self.reusable:
            raise self._disconnected(None)
        self._parser.reset()
        waiter: asyncio.Future[Response] = self._loop.create_future()
        self._waiter = waiter
        if deadline is not None:
            deadlines.watch(self, waiter, deadline)
        self._transport.write(data)
        return waiter

    def expire(self, waiter: asyncio.Future[Response]) -> None:
        """The deadline of the request `waiter` awaits has passed: fail it if still pending."""
        if self._waiter is waiter:
            self._settle(TimeoutError())
            self.abort()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _settle(self, result: Response | BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        if isinstance(result, Response):
            waiter.set_result(result)
        else:
            waiter.set_exception(result)

    def _disconnected(self, cause: BaseException | None) -> _Disconnected:
        return _Disconnected(response_started=self._parser.started, cause=cause)


class _Deadlines:
    """Shared timers for the responses awaited: one loop timer per `resolution` seconds of
    deadlines, not one per request, so a timeout fires up to `resolution` late. (On uvloop a
    timer costs more than the rest of a send, and asyncio.timeout even more.)"""

    def __init__(self, resolution: float) -> None:
        self._resolution = resolution
        self._slots: dict[int, tuple[asyncio.TimerHandle, list[_Watched]]] = {}

    def watch(self, connection: _Connection, waiter: asyncio.Future[Response], at: float) -> None:
        slot = math.ceil(at / self._resolution)
        entry = self._slots.get(slot)
        if entry is None:
            loop = asyncio.get_running_loop()
            timer = loop.call_at(slot * self._resolution, self._expire, slot)
            entry = self._slots[slot] = (timer, [])
        entry[1].append((connection, waiter))

    def cancel(self) -> None:
        for timer, _ in self._slots.values():
            timer.cancel()
        self._slots.clear()

    def _expire(self, slot: int) -> None:
        _, watched = self._slots.pop(slot)
        for connection, waiter in watched:
            connection.expire(waiter)


class _Addresses:
    """getaddrinfo results per (host, port), kept `ttl` seconds; one lookup per name at a time."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._known: dict[tuple[str, int], tuple[float, tuple[str, ...]]] = {}
        self._pending: dict[tuple[str, int], asyncio.Future[tuple[str, ...]]] = {}

    async def lookup(self, host: str, port: int) -> tuple[str, ...]:
        if _is_ip(host):
            return (host,)
        loop = asyncio.get_running_loop()
        key = (host, port)
        known = self._known.get(key)
        if known is not None and known[0] > loop.time():
            return known[1]
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = asyncio.ensure_future(self._resolve(host, port))
            pending.add_done_callback(lambda done: self._settle(key, done))
        try:
            # Shielded: one cancelled connect must not cancel a lookup others wait for.
            return await asyncio.shield(pending)
        except OSError as exc:
            raise SinkUnreachable("DNS lookup failed") from exc

    async def _resolve(self, host: str, port: int) -> tuple[str, ...]:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "no address")
        if len(self._known) >= _DNS_CACHE_SIZE:
            del self._known[next(iter(self._known))]
        self._known[(host, port)] = (loop.time() + self._ttl, addresses)
        return addresses

    def _settle(self, key: tuple[str, int], done: asyncio.Future[tuple[str, ...]]) -> None:
        self._pending.pop(key, None)
        if not done.cancelled():
            done.exception()  # Retrieved: a lookup all its waiters abandoned must not warn.


class LeanClient:
    """Pools of keep-alive connections per origin (see the module docstring)."""

    def __init__(self, *, keepalive: float, dns_ttl: float) -> None:
        self._keepalive = keepalive
        self._deadlines = _Deadlines(_DEADLINE_RESOLUTION)
        self._addresses = _Addresses(dns_ttl)
        self._idle: dict[_PoolKey, deque[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def start(self) -> None:
        """Start the sweep of expired idle connections; call inside the running loop."""
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="lean-client sweep")

    async def close(self) -> None:
        """Close every connection, idle or in use; idempotent."""
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            await asyncio.gather(sweeper, return_exceptions=True)
        self._deadlines.cancel()
        for connection in list(self._open):
            connection.abort()
        self._idle.clear()
        await asyncio.sleep(0)  # Let connection_lost run, so no transport outlives us.

    async def exchange(
        self, route: Route, data: bytes, tls: ssl.SSLContext | None, *, within: float | None
    ) -> Response:
        """Send `data` (a whole request) to `route`'s origin within `within` seconds (None: no
        limit); the response, a DeliveryError, or TimeoutError."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadline = None if within is None else now + within
        pool = (route.origin, tls)
        connection = self._take_idle(pool, fresh_since=now - self._keepalive)
        replayable = connection is not None
        if connection is None:
            connection = await self._connect_by(route, tls, deadline)
        while True:
            try:
                response = await connection.send(data, deadline=deadline, deadlines=self._deadlines)
            except _Disconnected as lost:
                connection.abort()
                if not replayable or lost.response_started:
                    raise _unreachable(lost) from (lost.cause or lost)
                # The replay rule (module docstring): once more, on a new connection.
                replayable = False
                connection = await self._connect_by(route, tls, deadline)
                continue
            except WireError as exc:
                connection.abort()
                raise SinkUnreachable("invalid HTTP response") from exc
            except BaseException:
                connection.abort()  # Timeout or cancellation: the stream's state is unknown.
                raise
            self._release(pool, connection, keep_alive=response.keep_alive, now=loop.time())
            return response

    async def _connect_by(
        self, route: Route, tls: ssl.SSLContext | None, deadline: float | None
    ) -> _Connection:
        async with asyncio.timeout_at(deadline):  # Connecting is rare: a timer of its own.
            return await self._connect(route, tls)

    def _take_idle(self, pool: _PoolKey, *, fresh_since: float) -> _Connection | None:
        """The most recently used idle connection of `pool` not idle since before
        `fresh_since`. An emptied pool stays (the sweep drops it): a burst empties and refills
        it on every send."""
        idle = self._idle.get(pool)
        while idle:
            connection = idle.pop()
            if connection.reusable and connection.idle_since >= fresh_since:
                return connection
            connection.close()
        return None

    def _release(
        self, pool: _PoolKey, connection: _Connection, *, keep_alive: bool, now: float
    ) -> None:
        if not (keep_alive and connection.reusable):
            connection.close()
            return
        connection.idle_since = now
        idle = self._idle.get(pool)
        if idle is None:
            idle = self._idle[pool] = deque()
        idle.append(connection)

    async def _connect(self, route: Route, tls: ssl.SSLContext | None) -> _Connection:
        host = route.url.raw_host or ""
        port = route.origin[2]
        loop = asyncio.get_running_loop()
        failure: OSError | None = None
        for address in await self._addresses.lookup(host, port):
            try:
                _, connection = await loop.create_connection(
                    lambda: _Connection(loop, self._open),
                    address,
                    port,
                    ssl=tls,
                    server_hostname=host if tls is not None else None,
                )
            except ssl.SSLCertVerificationError as exc:
                raise SinkTLSError("TLS certificate verification failed") from exc
            except ssl.SSLError as exc:
                raise SinkTLSError("TLS handshake failed") from exc
            except OSError as exc:
                if isinstance(exc, TimeoutError):
                    raise  # Left to the caller's timeout handling, as its own timeout.
                failure = exc
                continue
            return connection
        raise SinkUnreachable(os_reason(failure)) from failure

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._keepalive / 3)
            self._sweep()

    def _sweep(self) -> None:
        """Close connections idle past `keepalive`; the oldest are at the left of each pool."""
        expired_before = asyncio.get_running_loop().time() - self._keepalive
        for pool, idle in list(self._idle.items()):
            while idle and (idle[0].idle_since < expired_before or not idle[0].reusable):
                idle.popleft().close()
            if not idle:
                del self._idle[pool]


def _unreachable(lost: _Disconnected) -> DeliveryError:
    if isinstance(lost.cause, OSError):
        return SinkUnreachable(os_reason(lost.cause))
    return SinkUnreachable("server disconnected")


def os_reason(exc: BaseException | None) -> str:
    """ "connection refused", "connection reset by peer", ...: the errno's text, no address."""
    errno = getattr(exc, "errno", None)
    if isinstance(errno, int) and errno > 0:
        return os.strerror(errno).lower()
    return "connection failed"


def _is_ip(host: str) -> bool:
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return True
    return False
