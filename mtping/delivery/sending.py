"""Deliver one event to one sink: an HTTP POST, retried with backoff until delivered or given up.

A `Sender` owns two HTTP clients: the lean one (`pool.py`: prepared bytes over keep-alive
asyncio connections, the default) and aiohttp (`aiohttp_client.py`), which carries what the
lean one does not cover, or everything when the policy says `http_client="aiohttp"`. Both
send the same bytes, get the same per-attempt timeout and report failures as the same
DeliveryErrors, so the retry loop here does not know which one ran.

Concurrency is bounded by our own semaphores, not the clients': a per-origin one acquired
before the global one, so a sink that accepts connections and never answers holds at most
`per_origin_limit` of the `total_limit` slots and every other sink keeps flowing. Waiting for a
slot, like backoff sleeps and the start of attempts, never goes past the caller's `give_up_at`
(the source's next tick); an attempt already started may run to its own timeout.

Redirects are not followed (a POST's body must go where the user pointed it) and count as a
non-retriable failure. `Target.audience` is carried but unused: OIDC tokens come later.
This module never blocks the event loop (DNS lookups and CA loading run in threads), never
raises a client's exception types, and records only the per-attempt metrics; the caller
records per-event results (events, given up, lateness).
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Self

from mtping.delivery.aiohttp_client import AiohttpClient
from mtping.delivery.errors import (
    DeliveryError,
    InvalidRequest,
    SinkStatusError,
    SinkTimeout,
)
from mtping.delivery.gauges import SENDS_IN_FLIGHT
from mtping.delivery.policy import DeliveryPolicy, retry_after_seconds
from mtping.delivery.pool import LeanClient
from mtping.delivery.preparing import (
    Header,
    Origin,
    PreparedRequest,
    Route,
    Target,
    prepare_request,
)
from mtping.delivery.slots import Slots
from mtping.delivery.wire import Response, WireError, encode_fields
from mtping.metrics import ATTEMPTS, RETRIES, SINK_LATENCY, EventCount

NO_SLOT: Final = "deadline passed waiting for a connection slot"
NO_TIME: Final = "deadline passed before the first attempt"

# Seconds a resolved sink address is reused: Service DNS names rarely change, and a stale
# address costs failed attempts only until its entry expires.
_DNS_TTL: Final = 30.0
# Seconds an idle pooled connection is kept: longer than a minute, so the connections of one
# minute's burst carry the next (most schedules tick each minute) instead of every burst
# opening (and for https, handshaking) them all again. A server closing sooner is seen when its
# FIN arrives, and the connection leaves the pool. One that closes just as a request goes out
# (a 60 s idle timeout meets a 60 s tick) costs a replay on a new connection (pool.py), which
# is what the connection would have cost anyway. 75 s: nginx's default keepalive_timeout.
_KEEPALIVE: Final = 75.0
# Distinct CA bundles whose SSLContext is kept; the oldest is dropped past this.
_TLS_CACHE_SIZE: Final = 256
_RETRY_AFTER_STATUSES: Final = frozenset({429, 503})
# Attempt outcome labels of the usual status classes, not formatted anew per attempt.
_STATUS_CLASSES: Final = {klass: f"{klass}xx" for klass in range(1, 6)}


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


class _Attempt:
    """What every attempt of one send repeats, byte for byte; built once per send."""

    __slots__ = ("body", "headers", "lean_bytes", "route", "tls")

    def __init__(
        self,
        route: Route,
        tls: ssl.SSLContext | None,
        lean_bytes: bytes | None,
        headers: Sequence[Header],
        body: bytes,
    ) -> None:
        self.route = route
        self.tls = tls
        self.lean_bytes = lean_bytes
        """The whole request for the lean client; None: aiohttp sends `headers` and `body`."""
        self.headers = headers
        self.body = body


class _TlsContexts:
    """One SSLContext per distinct CA bundle (None: the system CAs alone), built once in a
    thread (loading the system CAs reads files) and shared by every send naming the same."""

    def __init__(self) -> None:
        self._by_pem: dict[str | None, asyncio.Task[ssl.SSLContext]] = {}

    async def context_for(self, pem: str | None) -> ssl.SSLContext:
        task = self._by_pem.get(pem)
        if task is None:
            task = self._start(pem)
        if task.done() and not task.cancelled() and task.exception() is None:
            return task.result()
        try:
            # Shielded: one cancelled send must not cancel the build others are waiting for.
            return await asyncio.shield(task)
        except (ssl.SSLError, ValueError) as exc:
            raise InvalidRequest("invalid CA certificates") from exc

    def _start(self, pem: str | None) -> asyncio.Task[ssl.SSLContext]:
        if len(self._by_pem) >= _TLS_CACHE_SIZE:
            del self._by_pem[next(iter(self._by_pem))]
        task = asyncio.create_task(asyncio.to_thread(_trusting, pem))
        self._by_pem[pem] = task
        return task


class Sender:
    """Delivers events over pooled connections; use as `async with Sender(policy)`."""

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
        self._slots: Slots[Origin] = Slots(
            per_origin=policy.per_origin_limit, total=policy.total_limit
        )
        self._tls = _TlsContexts()
        self._lean: LeanClient | None = None
        self._aiohttp: AiohttpClient | None = None
        self._started = False

    @property
    def tracked_origins(self) -> int:
        """Origins with a send holding or waiting for a slot (idle origins are dropped)."""
        return len(self._slots)

    @property
    def lean_connections(self) -> int:
        """Connections the lean client has open, idle or in use."""
        return self._lean.open_connections if self._lean else 0

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
        """Open the clients; must run inside the event loop that will send."""
        if self._clock is None:
            self._clock = asyncio.get_running_loop().time
        if not self._started:
            self._started = True
            if self._policy.http_client == "lean":
                self._lean = LeanClient(keepalive=_KEEPALIVE, dns_ttl=_DNS_TTL)
                self._lean.start()

    async def close(self) -> None:
        """Close the clients and their pooled connections; idempotent.

        Finish or cancel the sends first: an attempt still running fails, and the next one
        raises RuntimeError.
        """
        self._started = False
        lean, self._lean = self._lean, None
        fallback, self._aiohttp = self._aiohttp, None
        if lean is not None:
            await lean.close()
        if fallback is not None:
            await fallback.close()

    async def send(
        self, target: Target, headers: Sequence[Header], body: bytes, *, give_up_at: float
    ) -> Outcome:
        """POST `body` with `headers` to `target`: `send_prepared`, preparing for one call."""
        request = prepare_request(target, headers, body)
        return await self.send_prepared(request, give_up_at=give_up_at)

    async def send_prepared(
        self,
        request: PreparedRequest,
        fields: Sequence[Header] = (),
        *,
        give_up_at: float,
    ) -> Outcome:
        """POST `request` with the per-event header `fields` added, retrying until delivered
        or out of policy.

        `give_up_at` is a deadline on the sender's clock (by default the loop's): no attempt
        starts, no backoff sleep ends and no wait for a slot lasts past it. Never raises a
        delivery failure; every way of failing ends up in the returned Outcome.
        """
        SENDS_IN_FLIGHT.value += 1
        try:
            route = _route_of(request)
            tls = None
            if route.origin[0] == "https":
                tls = await self._tls.context_for(request.target.ca_certs or None)
            attempt = self._attempt(request, route, tls, fields)
            return await self._retry_until(attempt, give_up_at)
        except DeliveryError as err:
            return _failed(attempts=0, last=err)
        finally:
            SENDS_IN_FLIGHT.value -= 1

    async def _retry_until(self, attempt: _Attempt, give_up_at: float) -> Outcome:
        """The retry loop: attempts until one delivers, the policy gives up or time is out."""
        attempts = 0
        last: DeliveryError | None = None
        while self._now() < give_up_at:
            try:
                status = await self._attempt_in_slot(attempt, retry=attempts > 0, until=give_up_at)
            except _NoSlot:
                return _failed(attempts=attempts, last=last, reason=NO_SLOT)
            except DeliveryError as err:
                attempts, last = attempts + 1, err
                delay = self._delay_before_retry(err, attempts=attempts, until=give_up_at)
                if delay is None:
                    break
                await asyncio.sleep(delay)
            else:
                return _delivered(status, attempts=attempts + 1)
        return _failed(attempts=attempts, last=last, reason=None if last else NO_TIME)

    def _attempt(
        self,
        request: PreparedRequest,
        route: Route,
        tls: ssl.SSLContext | None,
        fields: Sequence[Header],
    ) -> _Attempt:
        """What every attempt of this send repeats, encoded once for the client carrying it."""
        try:
            if self._lean is not None and request.lean_bytes is not None:
                return _Attempt(route, tls, request.lean_encoding(fields), (), b"")
            encode_fields(fields)  # Validated as the lean client would, so both fail alike.
        except WireError as exc:
            raise InvalidRequest("invalid request") from exc
        return _Attempt(route, tls, None, (*request.headers, *fields), request.body)

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

    async def _attempt_in_slot(self, attempt: _Attempt, *, retry: bool, until: float) -> int:
        origin = attempt.route.origin
        gate = self._slots.take_now(origin)
        if gate is None:
            try:
                gate = await self._slots.take(origin, within=until - self._now())
            except TimeoutError as exc:
                raise _NoSlot from exc
        try:
            if retry:
                RETRIES.inc()
            return await self._post(attempt)
        finally:
            self._slots.release(origin, gate)

    async def _post(self, attempt: _Attempt) -> int:
        """One attempt: the 2xx status, or a DeliveryError; records the attempt's metrics."""
        started = time.perf_counter()
        try:
            response = await self._exchange(attempt)
        except TimeoutError as exc:
            failure: DeliveryError = SinkTimeout(self._policy.attempt_timeout)
            _record(started, failure.outcome_class)
            raise failure from exc
        except DeliveryError as failure:
            _record(started, failure.outcome_class)
            raise
        status = response.status
        _record(started, _STATUS_CLASSES.get(status // 100) or f"{status // 100}xx")
        if 200 <= status < 300:
            return status
        raise SinkStatusError(status, retry_after=_retry_after(response))

    def _exchange(self, attempt: _Attempt) -> Coroutine[Any, Any, Response]:
        """One attempt by the client that carries it, within the per-attempt timeout. (Not a
        coroutine itself, but returning the client's: one frame less per send.)"""
        if not self._started:
            raise RuntimeError("Sender is not started, or already closed")
        if attempt.lean_bytes is not None and self._lean is not None:
            return self._lean.exchange(
                attempt.route, attempt.lean_bytes, attempt.tls, within=self._policy.attempt_timeout
            )
        return self._exchange_by_aiohttp(attempt)

    async def _exchange_by_aiohttp(self, attempt: _Attempt) -> Response:
        if self._aiohttp is None:
            self._aiohttp = AiohttpClient(keepalive=_KEEPALIVE, dns_ttl=_DNS_TTL)
        async with asyncio.timeout(self._policy.attempt_timeout):
            return await self._aiohttp.exchange(
                attempt.route, attempt.headers, attempt.body, attempt.tls
            )

    def _now(self) -> float:
        if self._clock is None:
            raise RuntimeError("Sender is not started")
        return self._clock()


class _NoSlot(Exception):
    """Internal: the deadline passed while waiting for a concurrency slot."""


# Label children of the attempts counter, looked up once per outcome class, not per attempt.
_ATTEMPT_COUNTERS: dict[str, EventCount] = {}


def _record(started: float, outcome_class: str) -> None:
    SINK_LATENCY.observe(time.perf_counter() - started)
    counter = _ATTEMPT_COUNTERS.get(outcome_class)
    if counter is None:
        counter = _ATTEMPT_COUNTERS[outcome_class] = ATTEMPTS.labels(outcome_class)
    counter.inc()


def _route_of(request: PreparedRequest) -> Route:
    if request.error is not None or request.route is None:
        raise request.error or InvalidRequest("invalid request")
    return request.route


# The outcomes of sends delivered at the first attempt, one per status: immutable, so shared.
_FIRST_TRY: dict[int, Outcome] = {}


def _delivered(status: int, *, attempts: int) -> Outcome:
    if attempts != 1:
        return Outcome(delivered=True, status=status, attempts=attempts, error=None)
    outcome = _FIRST_TRY.get(status)
    if outcome is None:
        outcome = _FIRST_TRY[status] = Outcome(True, status, 1, None)
    return outcome


def _trusting(pem: str | None) -> ssl.SSLContext:
    """System CAs, plus the PEM bundle if given, as Knative does with sink.CACerts (runs in a
    thread)."""
    context = ssl.create_default_context()
    if pem is not None:
        context.load_verify_locations(cadata=pem)
    return context


def _retry_after(response: Response) -> float | None:
    value = response.retry_after
    if value is None or response.status not in _RETRY_AFTER_STATUSES:
        return None
    return retry_after_seconds(value, now=datetime.now(UTC))


def _failed(*, attempts: int, last: DeliveryError | None, reason: str | None = None) -> Outcome:
    """An undelivered Outcome: `reason` if given, else the last failure's text."""
    return Outcome(
        delivered=False,
        status=last.status if last else None,
        attempts=attempts,
        error=reason or (str(last) if last else None),
    )
