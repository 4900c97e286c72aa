"""Aggregated DeliveryFailed Events against a fake apiserver: create once, then patch the count."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient

from mtping.delivery import Outcome
from mtping.kube.events import EventRecorder
from mtping.model import SourceKey
from tests.unit.kube.conftest import FakeApiserver, Stalling, client_for, eventually, free_port

PING = SourceKey("team-a", "ping")
PONG = SourceKey("team-b", "pong")
UIDS = {PING: "0b7c-ping", PONG: "9f1e-pong"}
INSTANT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def recorder(api: ApiClient, interval: float = 60.0) -> EventRecorder:
    return EventRecorder(api, component="pingsource-mt-adapter", host="mtping-0", interval=interval)


def fail(events: EventRecorder, source: SourceKey, error: str = "503 from the sink") -> None:
    outcome = Outcome(delivered=False, status=503, attempts=3, error=error)
    events.delivery_failed(source, UIDS[source], outcome, INSTANT)


def stored(apiserver: FakeApiserver, source: SourceKey) -> dict[str, Any]:
    [event] = [e for (ns, _), e in apiserver.events.items() if ns == source.namespace]
    return event


async def test_first_flush_creates_one_event_per_failing_source_with_its_count(
    apiserver: FakeApiserver, api: ApiClient
) -> None:
    events = recorder(api)
    fail(events, PING, "timeout after 10s")
    fail(events, PING, "503 from the sink")
    fail(events, PONG, "connection refused")

    await events.flush()

    assert [(seen.method, seen.path) for seen in apiserver.event_requests] == [
        ("POST", "/api/v1/namespaces/team-a/events"),
        ("POST", "/api/v1/namespaces/team-b/events"),
    ]
    for source, count, error in ((PING, 2, "503 from the sink"), (PONG, 1, "connection refused")):
        event = stored(apiserver, source)
        assert event["involvedObject"] == {
            "apiVersion": "sources.knative.dev/v1",
            "kind": "PingSource",
            "name": source.name,
            "namespace": source.namespace,
            "uid": UIDS[source],
        }
        assert (event["type"], event["reason"], event["count"]) == (
            "Warning",
            "DeliveryFailed",
            count,
        )
        assert event["message"].startswith("event for the tick of ")
        assert event["message"].endswith(f"not delivered: {error}")
        assert STAMP.match(event["firstTimestamp"])
        assert STAMP.match(event["lastTimestamp"])
        assert event["source"] == {"component": "pingsource-mt-adapter", "host": "mtping-0"}
        assert event["metadata"]["namespace"] == source.namespace
        assert event["metadata"]["name"].startswith(f"{source.name}.")


async def test_later_failures_patch_the_count_instead_of_creating_another_event(
    apiserver: FakeApiserver, api: ApiClient
) -> None:
    events = recorder(api)
    fail(events, PING)
    fail(events, PING)
    await events.flush()
    [(_, name)] = apiserver.events
    fail(events, PING, "404 from the sink")

    await events.flush()

    [create, patch] = apiserver.event_requests
    assert create.method == "POST"
    assert (patch.method, patch.path) == ("PATCH", f"/api/v1/namespaces/team-a/events/{name}")
    assert patch.content_type == "application/strategic-merge-patch+json"
    assert patch.body["count"] == 3
    assert patch.body["message"].endswith("not delivered: 404 from the sink")
    assert stored(apiserver, PING)["count"] == 3


async def test_an_expired_event_is_created_anew(apiserver: FakeApiserver, api: ApiClient) -> None:
    events = recorder(api)
    fail(events, PING)
    await events.flush()
    apiserver.events.clear()  # events live an hour in the apiserver
    fail(events, PING)
    fail(events, PING)

    await events.flush()

    assert [seen.method for seen in apiserver.event_requests] == ["POST", "PATCH", "POST"]
    assert stored(apiserver, PING)["count"] == 2
    fail(events, PING)
    await events.flush()
    assert apiserver.event_requests[-1].method == "PATCH"
    assert stored(apiserver, PING)["count"] == 3


async def test_flush_with_nothing_pending_sends_nothing(
    apiserver: FakeApiserver, api: ApiClient
) -> None:
    events = recorder(api)
    fail(events, PING)
    await events.flush()

    await events.flush()

    assert len(apiserver.event_requests) == 1


async def test_an_api_error_is_logged_and_the_other_sources_still_written(
    apiserver: FakeApiserver, api: ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    apiserver.event_failures.append(500)
    events = recorder(api)
    fail(events, PING)
    fail(events, PONG)

    with caplog.at_level(logging.WARNING, logger="mtping.kube.events"):
        await events.flush()

    assert len(apiserver.event_requests) == 2
    assert list(apiserver.events) == [("team-b", stored(apiserver, PONG)["metadata"]["name"])]
    assert any("team-a/ping" in record.getMessage() for record in caplog.records)


async def test_a_patch_refused_for_another_reason_than_404_is_not_recreated(
    apiserver: FakeApiserver, api: ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    events = recorder(api)
    fail(events, PING)
    await events.flush()
    apiserver.event_failures.append(403)
    fail(events, PING)

    with caplog.at_level(logging.WARNING, logger="mtping.kube.events"):
        await events.flush()

    assert [seen.method for seen in apiserver.event_requests] == ["POST", "PATCH"]
    assert any("team-a/ping" in record.getMessage() for record in caplog.records)


async def test_an_unreachable_apiserver_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with client_for(f"http://127.0.0.1:{free_port()}") as api:
        events = recorder(api)
        fail(events, PING)

        with caplog.at_level(logging.WARNING, logger="mtping.kube.events"):
            await events.flush()

    assert any("team-a/ping" in record.getMessage() for record in caplog.records)


async def test_a_silent_apiserver_is_given_up_on_after_the_request_timeout(
    apiserver: FakeApiserver, api: ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    apiserver.event_failures.append(Stalling())
    events = EventRecorder(api, component="c", host="h", request_timeout=0.1)
    fail(events, PING)
    fail(events, PONG)

    with caplog.at_level(logging.WARNING, logger="mtping.kube.events"):
        async with asyncio.timeout(2):
            await events.flush()

    assert len(apiserver.events) == 1, "the source after the stalled one is still written"
    assert any("team-a/ping" in record.getMessage() for record in caplog.records)


async def test_run_flushes_every_interval_until_cancelled(
    apiserver: FakeApiserver, api: ApiClient
) -> None:
    events = recorder(api, interval=0.01)
    task = asyncio.create_task(events.run())
    try:
        fail(events, PING)
        await eventually(lambda: len(apiserver.events) == 1)
        fail(events, PING)
        await eventually(lambda: stored(apiserver, PING)["count"] == 2)
        assert not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert task.cancelled()
