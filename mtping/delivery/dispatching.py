"""Dispatching ticks to senders: one queue per sink origin, a few workers per queue.

The scheduler must never wait for a sink, and 100k events due in one second must not become
100k tasks. So a tick is appended to its origin's queue (O(1), no task), and each origin runs
at most `per_origin_limit` worker tasks that drain it. A black-holed sink fills only its own
queue and holds only its own workers; other origins' queues drain at their own pace. An event
still queued when its source's next tick comes (`give_up_at`) is dropped and counted, because a
stale event delivered late helps nobody and the queue must not grow without bound.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from mtping import metrics
from mtping.delivery.gauges import EVENTS_QUEUED
from mtping.delivery.preparing import Origin, PreparedRequest
from mtping.delivery.sending import Outcome, Sender
from mtping.event import EventTemplate, tick_headers
from mtping.model import SourceKey

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Job:
    """One event to send: a source's template at one scheduled instant. (Not frozen: a frozen
    dataclass sets each field through object.__setattr__, and a burst builds 100k of these.)"""

    source: SourceKey
    template: EventTemplate
    request: PreparedRequest
    """The sink's request minus `ce-id` and `ce-time`, prepared once per source change."""
    instant: datetime
    instant_seconds: float
    """`instant` as seconds since the epoch (computed once per tick, not once per event)."""
    give_up_at: float
    """Loop-clock time after which the event is abandoned (the source's next tick)."""


DROPPED = Outcome(
    delivered=False, status=None, attempts=0, error="next tick came before a worker was free"
)
STOPPED = Outcome(
    delivered=False, status=None, attempts=0, error="stopped before the send finished"
)


class Dispatcher:
    """Queues jobs per origin and drains them with bounded workers; reports each outcome."""

    def __init__(
        self,
        sender: Sender,
        *,
        per_origin_limit: int,
        on_outcome: Callable[[Job, Outcome], None],
    ) -> None:
        self._sender = sender
        self._per_origin_limit = per_origin_limit
        self._on_outcome = on_outcome
        self._queues: dict[Origin, deque[Job]] = {}
        self._workers: dict[Origin, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, job: Job) -> None:
        """Queue `job` without waiting; start a worker for its origin if one is allowed."""
        origin = job.request.origin
        queue = self._queues.get(origin)
        if queue is None:  # Not setdefault: that would build a deque per job.
            queue = self._queues[origin] = deque()
        queue.append(job)
        EVENTS_QUEUED.value += 1
        if self._workers.get(origin, 0) < min(self._per_origin_limit, len(queue)):
            self._start_worker(origin)

    @property
    def queued(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    async def drain(self, seconds: float) -> bool:
        """Wait until every queued job has finished; False if `seconds` passed first."""
        try:
            async with asyncio.timeout(seconds):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Cancel the workers; jobs still queued are dropped (and reported)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for queue in self._queues.values():
            while queue:
                self._finish(queue.popleft(), DROPPED)
        self._queues.clear()

    def _start_worker(self, origin: Origin) -> None:
        self._workers[origin] = self._workers.get(origin, 0) + 1
        self._idle.clear()
        scheme, host, port = origin
        task = asyncio.create_task(self._work(origin), name=f"deliver {scheme}://{host}:{port}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _work(self, origin: Origin) -> None:
        queue = self._queues[origin]
        loop = asyncio.get_running_loop()
        try:
            while queue:
                await self._deliver(queue.popleft(), loop)
        finally:
            self._workers[origin] -= 1
            if not self._workers[origin]:
                del self._workers[origin]
                if not queue:
                    del self._queues[origin]
            if not self._workers:
                self._idle.set()

    async def _deliver(self, job: Job, loop: asyncio.AbstractEventLoop) -> None:
        if loop.time() >= job.give_up_at:
            self._finish(job, DROPPED)
            return
        metrics.TICK_LATENESS.observe(max(0.0, time.time() - job.instant_seconds))
        try:
            outcome = await self._sender.send_prepared(
                job.request, tick_headers(job.template, job.instant), give_up_at=job.give_up_at
            )
        except asyncio.CancelledError:
            self._finish(job, STOPPED)  # close(): every job is reported, even one mid-send.
            raise
        self._finish(job, outcome)

    def _finish(self, job: Job, outcome: Outcome) -> None:
        EVENTS_QUEUED.value -= 1
        try:
            self._on_outcome(job, outcome)
        except Exception:
            log.exception("reporting the outcome of %s failed", job.source)
