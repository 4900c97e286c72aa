"""Dispatcher with a real Sender: per-origin queues and workers, per-tick headers, drops."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from mtping.delivery import Outcome, Sender, Target
from mtping.delivery.dispatching import DROPPED, STOPPED, Dispatcher, Job
from mtping.event import EventTemplate, event_id, format_time
from mtping.metrics import REGISTRY
from mtping.model import SourceKey
from mtping.sources import Firing
from tests.unit.delivery.conftest import BlackHole, Sink

INSTANT = datetime(2026, 11, 26, 22, 0, tzinfo=UTC)
TEMPLATE = EventTemplate(
    uid="uid-1",
    headers=(("ce-specversion", "1.0"), ("ce-source", "/s"), ("content-type", "text/plain")),
    body=b"tick",
)


def job(url: str, *, give_up_in: float = 5.0, name: str = "ping") -> Job:
    firing = Firing(SourceKey("default", name), TEMPLATE, Target(url))
    return Job(
        source=firing.key,
        template=firing.template,
        request=firing.request,
        instant=INSTANT,
        instant_seconds=INSTANT.timestamp(),
        give_up_at=asyncio.get_running_loop().time() + give_up_in,
    )


class Outcomes:
    def __init__(self) -> None:
        self.seen: list[tuple[Job, Outcome]] = []

    def __call__(self, finished: Job, outcome: Outcome) -> None:
        self.seen.append((finished, outcome))


def queued_gauge() -> float:
    return REGISTRY.get_sample_value("mtping_events_queued") or 0.0


async def test_each_job_is_sent_with_its_ticks_id_and_time(sender: Sender, sink: Sink) -> None:
    outcomes = Outcomes()
    dispatcher = Dispatcher(sender, per_origin_limit=4, on_outcome=outcomes)
    before = queued_gauge()

    for name in ("a", "b", "c"):
        dispatcher.submit(job(sink.url, name=name))
    assert queued_gauge() - before == 3
    assert await dispatcher.drain(5)

    assert [outcome.delivered for _, outcome in outcomes.seen] == [True] * 3
    assert dispatcher.queued == 0
    assert queued_gauge() == before
    for request in sink.received:
        assert request.headers["ce-id"] == event_id("uid-1", INSTANT)
        assert request.headers["ce-time"] == format_time(INSTANT)
        assert (request.headers["ce-source"], request.body) == ("/s", b"tick")


async def test_a_stuck_origin_holds_only_its_own_workers(
    sender: Sender, black_hole: BlackHole, other_sink: Sink
) -> None:
    outcomes = Outcomes()
    dispatcher = Dispatcher(sender, per_origin_limit=2, on_outcome=outcomes)
    for _ in range(6):
        dispatcher.submit(job(black_hole.url))
    await black_hole.wait_for_connections(2)

    dispatcher.submit(job(other_sink.url))
    async with asyncio.timeout(1):
        while not outcomes.seen:
            await asyncio.sleep(0.01)

    assert outcomes.seen[0][1].delivered
    assert black_hole.connections == 2
    await dispatcher.close()
    # Closing reports every job: the two stuck mid-send, and the four still queued.
    assert sorted(outcome.error or "" for _, outcome in outcomes.seen[1:]) == sorted(
        [STOPPED.error or ""] * 2 + [DROPPED.error or ""] * 4
    )


async def test_a_job_still_queued_at_its_next_tick_is_dropped(sender: Sender, sink: Sink) -> None:
    outcomes = Outcomes()
    dispatcher = Dispatcher(sender, per_origin_limit=1, on_outcome=outcomes)

    dispatcher.submit(job(sink.url, give_up_in=-1))
    assert await dispatcher.drain(1)

    assert [outcome for _, outcome in outcomes.seen] == [DROPPED]
    assert sink.received == []
