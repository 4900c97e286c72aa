"""The scheduler: one asyncio task that sleeps until the heap's next instant and fires it.

There is one timer for the whole process, never one per source: the heap (pure, in
`schedule/heap.py`) knows which group fires next. Cron instants are wall-clock instants, so the
loop compares against the wall clock, but it never sleeps longer than `MAX_SLEEP` at a time, so
a wall clock stepped forward or back is noticed within a second. Firing hands each due tick to
a callback that must not block: delivery runs elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

from mtping import metrics
from mtping.schedule.cron import CronSchedule
from mtping.schedule.heap import DueTick, ScheduleHeap

log = logging.getLogger(__name__)

Key = TypeVar("Key", bound=Hashable)
Payload = TypeVar("Payload")

MAX_SLEEP = 1.0


def wall_now() -> datetime:
    return datetime.now(UTC)


class Scheduler(Generic[Key, Payload]):
    """Owns the heap; `upsert`/`remove` take effect at once, `run` fires due ticks forever."""

    def __init__(
        self,
        *,
        fire: Callable[[DueTick[Payload], datetime], None],
        catch_up: timedelta,
        clock: Callable[[], datetime] = wall_now,
        max_sleep: float = MAX_SLEEP,
    ) -> None:
        self._fire = fire
        self._catch_up = catch_up
        self._clock = clock
        self._max_sleep = max_sleep
        self._heap: ScheduleHeap[Key, Payload] = ScheduleHeap(watermark=clock())
        self._wake = asyncio.Event()
        self.last_turn = time.monotonic()
        """Monotonic time of the loop's last turn: liveness notices a wedged scheduler."""

    def __len__(self) -> int:
        return len(self._heap)

    def upsert(self, key: Key, schedule: CronSchedule, payload: Payload) -> None:
        if self._heap.upsert(key, schedule, payload, now=self._clock()):
            self._changed()

    def remove(self, key: Key) -> None:
        if self._heap.remove(key):
            self._changed()

    async def run(self) -> None:
        while True:
            self.last_turn = time.monotonic()
            now = self._clock()
            self._fire_due(now)
            await self._sleep(self._seconds_until_next(now))

    def _fire_due(self, now: datetime) -> None:
        due = self._heap.pop_due(now, catch_up=self._catch_up)
        if due.skipped:
            metrics.TICKS_SKIPPED.inc(due.skipped)
            log.warning(
                "skipped %d ticks older than %s (clock jump or pause)", due.skipped, self._catch_up
            )
        for tick in due.ticks:
            self._fire(tick, now)

    def _seconds_until_next(self, now: datetime) -> float:
        upcoming = self._heap.next_fire()
        if upcoming is None:
            return self._max_sleep
        return min(self._max_sleep, max(0.0, (upcoming - now).total_seconds()))

    async def _sleep(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()

    def _changed(self) -> None:
        metrics.SOURCES.set(len(self._heap))
        metrics.GROUPS.set(self._heap.group_count)
        self._wake.set()
