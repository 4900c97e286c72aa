"""The scheduler loop: fires due ticks, wakes on changes, survives wall-clock jumps.

A fake wall clock drives it; the loop's own sleeps are capped at a few milliseconds so the
tests take no real time to speak of.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from mtping import metrics
from mtping.schedule import parse_schedule
from mtping.schedule.heap import DueTick
from mtping.scheduler import Scheduler

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
EVERY_SECOND = parse_schedule("* * * * * *")
EVERY_MINUTE = parse_schedule("* * * * *")


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Recorder:
    def __init__(self) -> None:
        self.fired: list[tuple[datetime, tuple[str, ...]]] = []

    def __call__(self, tick: DueTick[str], now: datetime) -> None:
        self.fired.append((tick.instant, tick.payloads))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def scheduler(clock: FakeClock, recorder: Recorder) -> AsyncIterator[Scheduler[str, str]]:
    running: Scheduler[str, str] = Scheduler(
        fire=recorder, catch_up=timedelta(seconds=10), clock=clock, max_sleep=0.002
    )
    task = asyncio.create_task(running.run())
    yield running
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def turns(count: int = 5) -> None:
    """Let the loop go round a few times (each turn sleeps at most 2 ms)."""
    for _ in range(count):
        await asyncio.sleep(0.003)


async def test_fires_each_due_instant_once_with_the_members_of_its_group(
    scheduler: Scheduler[str, str], clock: FakeClock, recorder: Recorder
) -> None:
    scheduler.upsert("a", EVERY_SECOND, "A")
    scheduler.upsert("b", EVERY_SECOND, "B")

    clock.now = T0 + timedelta(seconds=1)
    await turns()
    clock.now = T0 + timedelta(seconds=2)
    await turns()

    assert [(instant, sorted(p)) for instant, p in recorder.fired] == [
        (T0 + timedelta(seconds=1), ["A", "B"]),
        (T0 + timedelta(seconds=2), ["A", "B"]),
    ]


async def test_nothing_fires_before_the_instant(
    scheduler: Scheduler[str, str], clock: FakeClock, recorder: Recorder
) -> None:
    scheduler.upsert("a", EVERY_MINUTE, "A")
    clock.now = T0 + timedelta(seconds=59)
    await turns()

    assert recorder.fired == []


async def test_removed_source_stops_firing_at_once(
    scheduler: Scheduler[str, str], clock: FakeClock, recorder: Recorder
) -> None:
    scheduler.upsert("a", EVERY_SECOND, "A")
    scheduler.remove("a")
    clock.now = T0 + timedelta(seconds=3)
    await turns()

    assert recorder.fired == []
    assert len(scheduler) == 0


async def test_wall_clock_jump_forward_fires_the_recent_ticks_and_counts_the_rest(
    scheduler: Scheduler[str, str], clock: FakeClock, recorder: Recorder
) -> None:
    scheduler.upsert("a", EVERY_SECOND, "A")
    skipped_before = metrics.REGISTRY.get_sample_value("mtping_ticks_skipped_total") or 0.0

    clock.now = T0 + timedelta(hours=1)
    await turns()

    fired = [instant for instant, _ in recorder.fired]
    assert fired == [T0 + timedelta(hours=1, seconds=-s) for s in range(10, -1, -1)]
    skipped = metrics.REGISTRY.get_sample_value("mtping_ticks_skipped_total") or 0.0
    assert skipped - skipped_before == 3600 - 11


async def test_wall_clock_jump_backward_fires_nothing_twice(
    scheduler: Scheduler[str, str], clock: FakeClock, recorder: Recorder
) -> None:
    scheduler.upsert("a", EVERY_SECOND, "A")
    clock.now = T0 + timedelta(seconds=2)
    await turns()
    clock.now = T0 - timedelta(minutes=5)  # NTP stepped the clock back
    await turns()
    clock.now = T0 + timedelta(seconds=3)
    await turns()

    fired = [instant for instant, _ in recorder.fired]
    assert fired == [T0 + timedelta(seconds=s) for s in (1, 2, 3)]
