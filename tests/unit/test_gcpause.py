"""gcpause, and the engine pausing the collector for a big tick's burst (real Sender, real
HTTP server)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from aiohttp import web

from mtping import gcpause
from mtping.delivery import DeliveryPolicy, Sender, Target
from mtping.engine import Engine
from mtping.event import EventTemplate
from mtping.model import SourceKey, parse_source
from mtping.resolving import SpecResolver
from mtping.schedule.heap import DueTick
from mtping.sources import Firing


@pytest.fixture(autouse=True)
def collector_enabled() -> Iterator[None]:
    gc.enable()
    yield
    gc.enable()


def test_pauses_nest_and_the_last_release_resumes() -> None:
    gcpause.hold()
    with gcpause.paused():
        assert not gc.isenabled()
    assert not gc.isenabled()  # the outer hold is still on
    gcpause.release()
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled() -> None:
    gc.disable()
    with gcpause.paused():
        pass
    assert not gc.isenabled()


def test_release_without_hold_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="without a hold"):
        gcpause.release()


@pytest.fixture
async def sink_url() -> AsyncIterator[str]:
    async def accept(_: web.Request) -> web.Response:
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/", accept)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/"
    await runner.cleanup()


def tick(url: str, events: int) -> DueTick[Firing]:
    template = EventTemplate(uid="u", headers=(("ce-specversion", "1.0"),), body=b"")
    instant = datetime.now(UTC)
    firings = tuple(
        Firing(SourceKey("default", f"s{index}"), template, Target(url)) for index in range(events)
    )
    return DueTick(instant=instant, payloads=firings, next_instant=instant + timedelta(minutes=1))


@pytest.mark.parametrize(("events", "pauses"), [(1000, True), (999, False)])
async def test_a_big_tick_pauses_the_collector_until_its_events_are_sent(
    sink_url: str, events: int, pauses: bool
) -> None:
    async with Sender(DeliveryPolicy()) as sender:
        engine = Engine(
            sender=sender,
            resolver=SpecResolver(),
            parse=partial(parse_source),
            catch_up=timedelta(seconds=10),
            per_origin_limit=16,
        )
        engine._fire(tick(sink_url, events), datetime.now(UTC))
        paused_while_sending = not gc.isenabled()
        assert await engine.dispatcher.drain(30)
        for _ in range(3):  # the resuming task runs once the dispatcher is idle
            await asyncio.sleep(0)

    assert paused_while_sending is pauses
    assert gc.isenabled()
