"""Deliver one event to one sink: an HTTP POST, retried with backoff until delivered or given up.

A `Sender` owns one aiohttp session whose connector pools keep-alive connections per origin.
Concurrency is bounded by our own semaphores, not aiohttp's: a per-origin one acquired before
the global one, so a sink that accepts connections and never answers holds at most
`per_origin_limit` of the `total_limit` slots and every other sink keeps flowing. Waiting for a
slot, like backoff sleeps and the start of attempts, never goes past the caller's `give_up_at`
(the source's next tick); an attempt already started may run to its own timeout.

Redirects are not followed (a POST's body must go where the user pointed it) and count as a
non-retriable failure. `Target.audience` is carried but unused: OIDC tokens come later.
This module never blocks the event loop (DNS lookups and CA loading run in threads), never
raises aiohttp types, and records only the per-attempt metrics; the caller records per-event
results (events, given up, lateness).
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Final, Self, TypeAlias

import aiohttp
from yarl import URL

from mtping import __version__
from mtping.delivery.errors import (
    DeliveryError,
    InvalidRequest,
    SinkStatusError,
    SinkTimeout,
    SinkTLSError,
    SinkUnreachable,
)
from mtping.delivery.policy import DeliveryPolicy, retry_after_seconds
from mtping.metrics import ATTEMPTS, IN_FLIGHT, RETRIES, SINK_LATENCY

NO_SLOT: Final = "deadline passed waiting for a connection slot"
NO_TIME: Final = "deadline passed before the first attempt"

# Seconds a resolved sink address is reused: Service DNS names rarely change, and a stale
# address costs failed attempts only until its entry expires.
_DNS_TTL: Final = 30
# Seconds an idle pooled connection is kept. Shorter than a minute on purpose: with ticks every
# minute, a server idle timeout of about a minute would close connections just as we reuse them.
_KEEPALIVE: Final = 15.0
# Parsed sink URLs kept; a cluster has one per distinct sink, far fewer than this.
_ROUTE_CACHE_SIZE: Final = 8192
# Distinct CA bundles whose SSLContext is kept; the oldest is dropped past this.
_TLS_CACHE_SIZE: Final = 256
_RETRY_AFTER_STATUSES: Final = frozenset({429, 503})

Origin: TypeAlias = tuple[str, str, int]  # (scheme, host, port)


@dataclass(frozen=True, slots=True)
class Target:
    """Where to POST: `url`, an optional PEM bundle `ca_certs` trusted in addition to the system
    CAs (like Knative's sink.CACerts), and `audience`, kept for OIDC, which is not done yet."""

    url: str
    ca_certs: str | None = None
    audience: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """How delivering one event ended.

    `status`: the last HTTP status received, if any. `attempts`: HTTP attempts made (0 when
    none started). `error`: the last failure as short text, None when delivered.
    """

    delivered: bool
    status: int | None
    attempts: int
    error: str | None


@dataclass(frozen=True, slots=True)
class _Route:
    url: URL
    origin: Origin


@dataclass(frozen=True, slots=True)
class _Request:
    """What every attempt of one send repeats, byte for byte."""

    route: _Route
    tls: ssl.SSLContext | bool
    headers: Sequence[tuple[str, str]]
    body: bytes


class _OriginGate:
    """The semaphore of one origin and how many sends hold or wait for it."""

    __slots__ = ("semaphore", "users")

    def __init__(self, limit: int) -> None:
        self.semaphore = asyncio.Semaphore(limit)
        self.users = 0


class _Slots:
    """Per-origin then global concurrency slots; an origin's gate lives only while in use."""

    def __init__(self, *, per_origin: int, total: int) -> None:
        self._per_origin = per_origin
        self._total = asyncio.Semaphore(total)
        self._gates: dict[Origin, _OriginGate] = {}

    def __len__(self) -> int:
        return len(self._gates)

    async def acquire(self, origin: Origin) -> _OriginGate:
        gate = self._gates.get(origin)
        if gate is None:
            gate = self._gates[origin] = _OriginGate(self._per_origin)
        gate.users += 1
        try:
            await gate.semaphore.acquire()
            try:
                await self._total.acquire()
            except BaseException:
                gate.semaphore.release()
                raise
        except BaseException:
            self._leave(origin, gate)
            raise
        return gate

    def release(self, origin: Origin, gate: _OriginGate) -> None:
        self._total.release()
        gate.semaphore.release()
        self._leave(origin, gate)

    def _leave(self, origin: Origin, gate: _OriginGate) -> None:
        gate.users -= 1
        if gate.users == 0:
            del self._gates[origin]


class _TlsContexts:
    """One SSLContext per distinct CA bundle, built once in a thread (loading the system CAs
    reads files) and shared by every send that names the same bundle."""

    def __init__(self) -> None:
        self._by_pem: dict[str, asyncio.Task[ssl.SSLContext]] = {}

    async def context_for(self, pem: str) -> ssl.SSLContext:
        task = self._by_pem.get(pem)
        if task is None:
            task = self._start(pem)
        try:
            # Shielded: one cancelled send must not cancel the build others are waiting for.
            return await asyncio.shield(task)
        except (ssl.SSLError, ValueError) as exc:
            raise InvalidRequest("invalid CA certificates") from exc

    def _start(self, pem: str) -> asyncio.Task[ssl.SSLContext]:
        if len(self._by_pem) >= _TLS_CACHE_SIZE:
            del self._by_pem[next(iter(self._by_pem))]
        task = asyncio.create_task(asyncio.to_thread(_trusting, pem))
        self._by_pem[pem] = task
        return task


class Sender:
    """Delivers events over one pooled aiohttp session; use as `async with Sender(policy)`."""

    def __init__(
        self,
        policy: DeliveryPolicy,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._policy = policy
        self._rng = rng or random.Random()
        self._clock = clock
        self._slots = _Slots(per_origin=policy.per_origin_limit, total=policy.total_limit)
        self._tls = _TlsContexts()
        self._session: aiohttp.ClientSession | None = None

    @property
    def tracked_origins(self) -> int:
        """Origins with a send holding or waiting for a slot (idle origins are dropped)."""
        return len(self._slots)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the session; must run inside the event loop that will send."""
        if self._clock is None:
            self._clock = asyncio.get_running_loop().time
        if self._session is None:
            self._session = _open_session(self._policy)

    async def close(self) -> None:
        """Close the session and its pooled connections; idempotent.

        Finish or cancel the sends first: an attempt still running fails, and the next one
        raises RuntimeError.
        """
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def send(
        self,
        target: Target,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        *,
        give_up_at: float,
    ) -> Outcome:
        """POST `body` with `headers` to `target`, retrying until delivered or out of policy.

        `give_up_at` is a deadline on the sender's clock (by default the loop's): no attempt
        starts, no backoff sleep ends and no wait for a slot lasts past it. Never raises a
        delivery failure; every way of failing ends up in the returned Outcome.
        """
        IN_FLIGHT.inc()
        try:
            return await self._deliver(target, headers, body, give_up_at=give_up_at)
        finally:
            IN_FLIGHT.dec()

    async def _deliver(
        self,
        target: Target,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        *,
        give_up_at: float,
    ) -> Outcome:
        try:
            request = await self._prepare(target, headers, body)
        except DeliveryError as err:
            return _failed(attempts=0, last=err)
        attempts = 0
        last: DeliveryError | None = None
        while self._now() < give_up_at:
            try:
                status = await self._attempt_in_slot(request, retry=attempts > 0, until=give_up_at)
            except _NoSlot:
                return _failed(attempts=attempts, last=last, reason=NO_SLOT)
            except DeliveryError as err:
                attempts, last = attempts + 1, err
                delay = self._delay_before_retry(err, attempts=attempts, until=give_up_at)
                if delay is None:
                    break
                await asyncio.sleep(delay)
            else:
                return Outcome(delivered=True, status=status, attempts=attempts + 1, error=None)
        return _failed(attempts=attempts, last=last, reason=None if last else NO_TIME)

    async def _prepare(
        self, target: Target, headers: Sequence[tuple[str, str]], body: bytes
    ) -> _Request:
        route = _route(target.url)
        tls: ssl.SSLContext | bool = True  # aiohttp's default: verify against the system CAs.
        if route.url.scheme == "https" and target.ca_certs:
            tls = await self._tls.context_for(target.ca_certs)
        return _Request(route=route, tls=tls, headers=headers, body=body)

    def _delay_before_retry(
        self, err: DeliveryError, *, attempts: int, until: float
    ) -> float | None:
        """Seconds to sleep before the next attempt, or None to give up now."""
        if not err.retriable or attempts >= self._policy.max_attempts:
            return None
        delay = max(self._policy.backoff(attempts, self._rng), err.retry_after or 0.0)
        if self._now() + delay >= until:
            return None  # Sleeping would end past the deadline: the next tick takes over.
        return delay

    async def _attempt_in_slot(self, request: _Request, *, retry: bool, until: float) -> int:
        origin = request.route.origin
        try:
            async with asyncio.timeout(until - self._now()):
                gate = await self._slots.acquire(origin)
        except TimeoutError as exc:
            raise _NoSlot from exc
        try:
            if retry:
                RETRIES.inc()
            return await self._post(request)
        finally:
            self._slots.release(origin, gate)

    async def _post(self, request: _Request) -> int:
        """One attempt: the 2xx status, or a DeliveryError; records the attempt's metrics."""
        session = self._session
        if session is None:
            raise RuntimeError("Sender is not started, or already closed")
        started = time.perf_counter()
        try:
            response = await session.post(
                request.route.url,
                headers=request.headers,
                data=request.body,
                ssl=request.tls,
                allow_redirects=False,
            )
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            SINK_LATENCY.observe(time.perf_counter() - started)
            failure = _translate(exc, self._policy.attempt_timeout)
            ATTEMPTS.labels(failure.outcome_class).inc()
            raise failure from exc
        SINK_LATENCY.observe(time.perf_counter() - started)
        async with response:
            await _drain(response)
        ATTEMPTS.labels(f"{response.status // 100}xx").inc()
        if 200 <= response.status < 300:
            return response.status
        raise SinkStatusError(response.status, retry_after=_retry_after(response))

    def _now(self) -> float:
        if self._clock is None:
            raise RuntimeError("Sender is not started")
        return self._clock()


class _NoSlot(Exception):
    """Internal: the deadline passed while waiting for a concurrency slot."""


def _open_session(policy: DeliveryPolicy) -> aiohttp.ClientSession:
    # limit=0: aiohttp's own limits would queue us invisibly; our semaphores bound concurrency.
    connector = aiohttp.TCPConnector(
        limit=0, limit_per_host=0, ttl_dns_cache=_DNS_TTL, keepalive_timeout=_KEEPALIVE
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=policy.attempt_timeout),
        headers={"User-Agent": f"mtping/{__version__}"},
        # The event's headers say the content type; never invent application/octet-stream.
        skip_auto_headers=("Content-Type",),
        # Sinks are independent: a cookie one sets must never ride along to another.
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
    )


@functools.lru_cache(maxsize=_ROUTE_CACHE_SIZE)
def _route(url: str) -> _Route:
    """Parse a sink URL once; the origin keys the per-origin slots."""
    try:
        parsed = URL(url)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest("invalid sink URL") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host or parsed.port is None:
        raise InvalidRequest("sink URL must be an absolute http or https URL")
    return _Route(url=parsed, origin=(parsed.scheme, parsed.host, parsed.port))


def _trusting(pem: str) -> ssl.SSLContext:
    """System CAs plus the PEM bundle, as Knative does with sink.CACerts (runs in a thread)."""
    context = ssl.create_default_context()
    context.load_verify_locations(cadata=pem)
    return context


async def _drain(response: aiohttp.ClientResponse) -> None:
    """Read and discard the body so the connection can go back to the pool.

    The status has already decided the attempt: a body cut short only costs the connection
    (aiohttp closes it), never a retry that would deliver the event twice.
    """
    try:
        while await response.content.readany():
            pass
    except (aiohttp.ClientError, OSError):
        pass


def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None or response.status not in _RETRY_AFTER_STATUSES:
        return None
    return retry_after_seconds(value, now=datetime.now(UTC))


def _translate(exc: Exception, timeout: float | None) -> DeliveryError:
    """The DeliveryError for an aiohttp, OS or value error raised by one attempt."""
    if isinstance(exc, TimeoutError):  # Before OSError: TimeoutError is one.
        return SinkTimeout(timeout)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return SinkTLSError("TLS certificate verification failed")
    if isinstance(exc, aiohttp.ClientSSLError):
        return SinkTLSError("TLS handshake failed")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return SinkUnreachable("DNS lookup failed")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return SinkUnreachable("server disconnected")
    if isinstance(exc, ValueError):  # aiohttp.InvalidURL, or a header with a line break.
        return InvalidRequest("invalid request")
    return SinkUnreachable(_os_reason(exc))


def _os_reason(exc: Exception) -> str:
    """ "connection refused", "connection reset by peer", ...: the errno's text, no address."""
    errno = getattr(exc, "errno", None)
    if isinstance(errno, int) and errno > 0:
        return os.strerror(errno).lower()
    return "connection failed"


def _failed(*, attempts: int, last: DeliveryError | None, reason: str | None = None) -> Outcome:
    """An undelivered Outcome: `reason` if given, else the last failure's text."""
    return Outcome(
        delivered=False,
        status=last.status if last else None,
        attempts=attempts,
        error=reason or (str(last) if last else None),
    )
