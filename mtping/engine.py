"""The engine: registry -> scheduler -> dispatcher, the same for the cluster and for local files.

It owns no I/O of its own: sources are fed to `engine.registry` by a watch (cluster mode) or a
file loader (local mode), and events leave through the `Sender` it is given. The engine turns
each due tick into one delivery job per source, and each finished job into metrics and, when
delivery gave up, a call to the failure reporter (Kubernetes Events in cluster mode). Every
finished job, delivered or not, also goes to the delivery observer (standalone mode's
`status.lastDelivery`), which must only record it: no I/O on the delivery path.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

from mtping import gcpause, metrics
from mtping.delivery import Outcome, Sender
from mtping.delivery.dispatching import Dispatcher, Job
from mtping.model import PingSourceSpec, SourceKey
from mtping.resolving import Resolver
from mtping.schedule.heap import DueTick
from mtping.scheduler import Scheduler
from mtping.sources import Firing, SourceObserver, SourceRegistry

log = logging.getLogger(__name__)

# A tick of this many events pauses the cyclic garbage collector until they are sent, for at
# most _BURST_GC_PAUSE seconds (gcpause: 186 ms of collections in a 100k burst otherwise).
_BURST_MIN_EVENTS: Final = 1000
_BURST_GC_PAUSE: Final = 5.0


class FailureReporter(Protocol):
    def delivery_failed(
        self, source: SourceKey, uid: str, outcome: Outcome, instant: datetime
    ) -> None: ...


class LogOnlyReporter:
    def delivery_failed(
        self, source: SourceKey, uid: str, outcome: Outcome, instant: datetime
    ) -> None:
        """Nothing beyond the engine's own log line (local mode has no cluster to tell)."""


class DeliveryObserver(Protocol):
    def delivery_finished(self, source: SourceKey, instant: datetime, outcome: Outcome) -> None:
        """The tick of `source` scheduled at `instant` ended as `outcome`; must not block."""


class Engine:
    def __init__(
        self,
        *,
        sender: Sender,
        resolver: Resolver,
        parse: Callable[[dict[str, Any]], PingSourceSpec],
        catch_up: timedelta,
        per_origin_limit: int,
        reporter: FailureReporter | None = None,
        observer: SourceObserver | None = None,
        deliveries: DeliveryObserver | None = None,
    ) -> None:
        self._reporter = reporter or LogOnlyReporter()
        self._deliveries = deliveries
        self._gc_pauses: set[asyncio.Task[bool]] = set()
        self.scheduler: Scheduler[SourceKey, Firing] = Scheduler(fire=self._fire, catch_up=catch_up)
        self.dispatcher = Dispatcher(
            sender, per_origin_limit=per_origin_limit, on_outcome=self._on_outcome
        )
        self.registry = SourceRegistry(
            scheduler=self.scheduler, resolver=resolver, parse=parse, observer=observer
        )

    async def run(self) -> None:
        await self.scheduler.run()

    def _fire(self, tick: DueTick[Firing], now: datetime) -> None:
        if len(tick.payloads) >= _BURST_MIN_EVENTS:
            self._pause_gc_during_burst()
        # Each event may be retried until its source's next tick, never past it.
        give_up_at = asyncio.get_running_loop().time() + (tick.next_instant - now).total_seconds()
        instant_seconds = tick.instant.timestamp()
        for firing in tick.payloads:
            self.dispatcher.submit(
                Job(
                    source=firing.key,
                    template=firing.template,
                    request=firing.request,
                    instant=tick.instant,
                    instant_seconds=instant_seconds,
                    give_up_at=give_up_at,
                )
            )

    def _pause_gc_during_burst(self) -> None:
        """No cyclic collections until the burst's jobs are done, or `_BURST_GC_PAUSE` passed.
        (Released by a done callback: it runs even if the wait is cancelled before it starts.)"""
        gcpause.hold()
        drained = asyncio.create_task(self.dispatcher.drain(_BURST_GC_PAUSE), name="gc pause")
        self._gc_pauses.add(drained)
        drained.add_done_callback(self._end_gc_pause)

    def _end_gc_pause(self, drained: asyncio.Task[bool]) -> None:
        self._gc_pauses.discard(drained)
        gcpause.release()

    def _on_outcome(self, job: Job, outcome: Outcome) -> None:
        if self._deliveries is not None:
            self._deliveries.delivery_finished(job.source, job.instant, outcome)
        if outcome.delivered:
            _delivered_counter(job.source.namespace).inc()
            return
        result = "dropped" if outcome.attempts == 0 else "given_up"
        metrics.EVENTS.labels(namespace=job.source.namespace, result=result).inc()
        metrics.GIVEN_UP.labels(namespace=job.source.namespace, reason=_reason_class(outcome)).inc()
        log.warning(
            "%s: event for %s not delivered after %d attempt(s): %s",
            job.source,
            job.instant.isoformat(),
            outcome.attempts,
            outcome.error,
        )
        self._reporter.delivery_failed(job.source, job.template.uid, outcome, job.instant)


@functools.lru_cache(maxsize=4096)
def _delivered_counter(namespace: str) -> metrics.EventCount:
    """The delivered-events counter of `namespace`: a label lookup per namespace, not per event
    (`labels()` costs as much as a tenth of a whole send)."""
    return metrics.EVENTS.labels(namespace=namespace, result="delivered")


def _reason_class(outcome: Outcome) -> str:
    """A bounded label: the status class, or the kind of transport failure."""
    if outcome.status is not None:
        return f"{outcome.status // 100}xx"
    if outcome.attempts == 0:
        return "dropped"
    return "timeout" if "timeout" in (outcome.error or "") else "connection"
