"""Both HTTP clients of the Sender against Knative's event_display (Go's net/http server).

The events are built the way the engine builds them (template once, `ce-id`/`ce-time` per
tick) and must come out of event_display's CloudEvents SDK whole: id, source, type, data.
Several events per client go over kept-alive connections to Go's server.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mtping.delivery import HTTP_CLIENTS, DeliveryPolicy, Sender, Target, prepare_request
from mtping.event import build_template, event_id, tick_headers
from mtping.model import parse_source
from tests.harness.peers import start_event_display, wait_until_listening

FIRST_TICK = datetime(2026, 11, 26, 22, 0, tzinfo=UTC)


@pytest.mark.parametrize("http_client", HTTP_CLIENTS)
async def test_event_display_receives_every_event_whole(tmp_path: Path, http_client: str) -> None:
    spec = parse_source(
        {
            "metadata": {"namespace": "peers", "name": f"via-{http_client}", "uid": "u-1"},
            "spec": {
                "schedule": "* * * * *",
                "contentType": "application/json",
                "data": '{"sent by": "mtping"}',
                "ceOverrides": {"extensions": {"client": http_client}},
                "sink": {"uri": "http://127.0.0.1:8080/"},
            },
        }
    )
    template = build_template(spec)
    display = start_event_display(log_dir=tmp_path)
    ticks = [FIRST_TICK + timedelta(minutes=minute) for minute in range(3)]
    try:
        async with asyncio.timeout(20):
            await wait_until_listening(display)
        request = prepare_request(Target(display.url + "/"), template.headers, template.body)
        async with Sender(DeliveryPolicy(http_client=http_client)) as sender:
            loop = asyncio.get_running_loop()
            outcomes = [
                await sender.send_prepared(
                    request, tick_headers(template, tick), give_up_at=loop.time() + 10
                )
                for tick in ticks
            ]
            connections = sender.lean_connections
        async with asyncio.timeout(10):
            log = await display.wait_for_log(event_id("u-1", ticks[-1]))
    finally:
        display.stop()
    assert [(outcome.delivered, outcome.attempts) for outcome in outcomes] == [(True, 1)] * 3
    assert connections == (1 if http_client == "lean" else 0)
    for tick in ticks:
        assert f"id: {event_id('u-1', tick)}" in log
    assert log.count(f"source: /apis/v1/namespaces/peers/pingsources/via-{http_client}") == 3
    assert log.count(f"client: {http_client}") == 3
    assert log.count('"sent by": "mtping"') == 3
