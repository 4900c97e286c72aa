"""`mtping run` against the real control plane, with the RBAC of config/ and real HTTP sinks.

Every test starts the installed `mtping` console script as a child process authenticated as
config/'s ServiceAccount (never as admin), creates PingSources through the apiserver, and
asserts on what arrives at a real HTTP server: timing, headers and bodies on the wire.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
import urllib.request
from typing import Any

from mtping.event import event_id
from tests.harness.controlplane import ControlPlane
from tests.harness.sinks import BlackHole, Received, RecordingSink
from tests.integration.support import (
    GROUP,
    count_from,
    create_source,
    mark_ready,
    patch_spec,
    pingsource_path,
)

# -- behaviour -------------------------------------------------------------------------------


async def test_seconds_schedule_fires_on_time_with_exact_headers(
    control_plane: ControlPlane, namespace: str, sink: RecordingSink, run_mtping: Any
) -> None:
    mtping = run_mtping()
    await mtping.wait_ready()
    created = create_source(
        control_plane,
        namespace,
        "every-2s",
        {
            "schedule": "*/2 * * * * *",
            "contentType": "application/json",
            "data": '{"message": "hello"}',
            "ceOverrides": {"extensions": {"team": "a", "tier": "gold"}},
            "sink": {"uri": sink.url},
        },
    )

    await sink.wait_for(count_from("every-2s", 4), timeout=12)

    events = sink.from_source("every-2s")[:4]
    instants = [event.ce_time for event in events]
    assert [b - a for a, b in itertools.pairwise(instants)] == [instants[1] - instants[0]] * 3
    assert (instants[1] - instants[0]).total_seconds() == 2
    assert all(instant.second % 2 == 0 and instant.microsecond == 0 for instant in instants)
    assert max(event.lateness for event in events) < 0.1, [e.lateness for e in events]
    for event, instant in zip(events, instants, strict=True):
        headers = event.headers
        assert headers["ce-specversion"] == "1.0"
        assert headers["ce-type"] == "dev.knative.sources.ping"
        assert headers["ce-source"] == f"/apis/v1/namespaces/{namespace}/pingsources/every-2s"
        assert headers["ce-id"] == event_id(created["metadata"]["uid"], instant)
        assert (headers["ce-team"], headers["ce-tier"]) == ("a", "gold")
        assert headers["content-type"] == "application/json"
        assert headers["kn-namespace"] == namespace
        assert event.body == b'{"message": "hello"}'


async def test_data_databased64_and_v1beta1_jsondata_bodies(
    control_plane: ControlPlane, namespace: str, sink: RecordingSink, run_mtping: Any
) -> None:
    mtping = run_mtping()
    await mtping.wait_ready()
    every_second = {"schedule": "* * * * * *", "sink": {"uri": sink.url}}
    create_source(
        control_plane,
        namespace,
        "plain",
        {**every_second, "contentType": "text/plain", "data": "just text"},
    )
    create_source(
        control_plane,
        namespace,
        "binary",
        {
            **every_second,
            "contentType": "application/octet-stream",
            "dataBase64": base64.b64encode(b"\x00\x01\xfe\xff").decode(),
        },
    )
    create_source(
        control_plane,
        namespace,
        "tutorial",
        {**every_second, "jsonData": '{"message": "hello, world!"}'},
        version="v1beta1",
    )
    create_source(control_plane, namespace, "empty", every_second)

    await sink.wait_for(
        lambda got: all(count_from(n, 1)(got) for n in ("plain", "binary", "tutorial", "empty")),
        timeout=8,
    )

    def first(name: str) -> tuple[str | None, bytes]:
        event = sink.from_source(name)[0]
        return event.headers.get("content-type"), event.body

    assert first("plain") == ("text/plain", b"just text")
    assert first("binary") == ("application/octet-stream", b"\x00\x01\xfe\xff")
    assert first("tutorial") == ("application/json", b'{"message": "hello, world!"}')
    assert first("empty") == (None, b"")


async def test_create_update_and_delete_take_effect_within_a_second(
    control_plane: ControlPlane, namespace: str, sink: RecordingSink, run_mtping: Any
) -> None:
    mtping = run_mtping()
    await mtping.wait_ready()

    created_at = time.time()
    create_source(
        control_plane,
        namespace,
        "live",
        {"schedule": "* * * * * *", "data": "v1", "sink": {"uri": sink.url}},
    )
    await sink.wait_for(count_from("live", 1), timeout=5)
    assert sink.from_source("live")[0].arrived - created_at < 1.1

    patched_at = time.time()
    patch_spec(control_plane, namespace, "live", {"data": "v2"})
    await sink.wait_for(lambda got: any(r.body == b"v2" for r in got), timeout=5)
    first_v2 = next(r for r in sink.received if r.body == b"v2")
    assert first_v2.arrived - patched_at < 1.1

    control_plane.rest.request("DELETE", pingsource_path(namespace, "live"))
    deleted_at = time.time()
    await asyncio.sleep(2.5)
    assert all(r.arrived < deleted_at + 1.0 for r in sink.from_source("live"))


async def test_503_then_200_is_delivered_once_with_the_same_id(
    control_plane: ControlPlane, namespace: str, run_mtping: Any
) -> None:
    def fail_first_attempt(request: Received, history: list[Received]) -> int:
        seen = any(r.headers["ce-id"] == request.headers["ce-id"] for r in history)
        return 200 if seen else 503

    flaky = await RecordingSink(respond=fail_first_attempt).start()
    try:
        mtping = run_mtping()
        await mtping.wait_ready()
        create_source(
            control_plane,
            namespace,
            "flaky",
            {"schedule": "*/2 * * * * *", "data": "x", "sink": {"uri": flaky.url}},
        )
        await flaky.wait_for(count_from("flaky", 4), timeout=10)
    finally:
        await flaky.stop()

    by_id: dict[str, list[Received]] = {}
    for request in flaky.received[:4]:
        by_id.setdefault(request.headers["ce-id"], []).append(request)
    assert [len(attempts) for attempts in by_id.values()] == [2, 2]
    for first, retry in by_id.values():
        assert first.headers == retry.headers
    assert mtping.metric("mtping_events_total", namespace=namespace, result="delivered") >= 2
    assert mtping.metric("mtping_delivery_retries_total") >= 2


async def test_dead_sink_gives_up_and_says_so_in_metrics_and_a_kubernetes_event(
    control_plane: ControlPlane, namespace: str, run_mtping: Any, unused_tcp_port: int
) -> None:
    mtping = run_mtping("--max-attempts=3", "--failure-event-interval=1")
    await mtping.wait_ready()
    create_source(
        control_plane,
        namespace,
        "doomed",
        {
            "schedule": "*/2 * * * * *",
            "data": "x",
            "sink": {"uri": f"http://127.0.0.1:{unused_tcp_port}/"},
        },
    )

    async with asyncio.timeout(15):
        while not (events := _warning_events(control_plane, namespace)):
            await asyncio.sleep(0.25)

    (event,) = events
    assert event["involvedObject"]["name"] == "doomed"
    assert event["involvedObject"]["kind"] == "PingSource"
    assert "connection refused" in event["message"]
    given_up = mtping.metric(
        "mtping_deliveries_given_up_total", namespace=namespace, reason="connection"
    )
    assert given_up >= 1
    attempts = mtping.metric("mtping_delivery_attempts_total", outcome="connection")
    assert attempts >= 3 * given_up


def _warning_events(plane: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    listed = plane.rest.get(f"/api/v1/namespaces/{namespace}/events")
    return [e for e in listed.get("items", []) if e.get("reason") == "DeliveryFailed"]


async def test_black_holed_sink_does_not_delay_other_tenants(
    control_plane: ControlPlane, namespace: str, sink: RecordingSink, run_mtping: Any
) -> None:
    hole = await BlackHole().start()
    try:
        mtping = run_mtping("--sink-timeout=30")
        await mtping.wait_ready()
        for index in range(40):
            create_source(
                control_plane,
                namespace,
                f"hole-{index}",
                {"schedule": "* * * * * *", "sink": {"uri": hole.url}},
            )
        create_source(
            control_plane,
            namespace,
            "healthy",
            {"schedule": "* * * * * *", "sink": {"uri": sink.url}},
        )
        await sink.wait_for(count_from("healthy", 6), timeout=12)
    finally:
        await hole.stop()

    lateness = [event.lateness for event in sink.from_source("healthy")]
    assert hole.connections >= 40
    assert max(lateness) < 0.1, lateness


async def test_ticks_continue_while_the_apiserver_restarts_and_the_watch_recovers(
    control_plane: ControlPlane, namespace: str, sink: RecordingSink, run_mtping: Any
) -> None:
    mtping = run_mtping()
    await mtping.wait_ready()
    create_source(
        control_plane, namespace, "steady", {"schedule": "* * * * * *", "sink": {"uri": sink.url}}
    )
    await sink.wait_for(count_from("steady", 2), timeout=5)

    await asyncio.to_thread(control_plane.kill_apiserver)
    await asyncio.sleep(3)
    await asyncio.to_thread(control_plane.start_apiserver)
    create_source(
        control_plane,
        namespace,
        "after-restart",
        {"schedule": "* * * * * *", "sink": {"uri": sink.url}},
    )
    await sink.wait_for(count_from("after-restart", 1), timeout=20)

    seconds = sorted(int(r.ce_time.timestamp()) for r in sink.from_source("steady"))
    assert seconds == list(range(seconds[0], seconds[-1] + 1)), "a tick was lost"
    assert len(seconds) >= 5
    assert mtping.metric("mtping_watch_restarts_total", reason="error") >= 1


async def test_delete_during_outage_is_not_lost_when_the_watch_gets_410(
    control_plane: ControlPlane, namespace: str, sink: RecordingSink, run_mtping: Any
) -> None:
    """Delete a source straight in etcd while the apiserver is down, then compact etcd: the
    watch cannot resume (410 Gone), mtping relists and must notice the delete."""
    mtping = run_mtping()
    await mtping.wait_ready()
    for name in ("kept", "deleted"):
        create_source(
            control_plane, namespace, name, {"schedule": "* * * * * *", "sink": {"uri": sink.url}}
        )
    await sink.wait_for(
        lambda got: count_from("kept", 1)(got) and count_from("deleted", 1)(got), timeout=5
    )

    await asyncio.to_thread(control_plane.stop_apiserver)
    key = f"/registry/{GROUP}/pingsources/{namespace}/deleted"
    await asyncio.to_thread(_etcd_delete_and_compact, control_plane, key)
    await asyncio.to_thread(control_plane.start_apiserver)

    async with asyncio.timeout(20):
        while mtping.metric("mtping_watch_relists_total", reason="gone") < 1:
            await asyncio.sleep(0.25)
    relisted_at = time.time()
    await asyncio.sleep(2)
    assert all(r.arrived < relisted_at + 0.5 for r in sink.from_source("deleted"))
    assert any(r.arrived > relisted_at + 1 for r in sink.from_source("kept"))


def _etcd_delete_and_compact(plane: ControlPlane, key: str) -> None:
    """Through etcd's JSON gateway: delete one key, then compact to the newest revision."""

    def call(path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{plane.etcd_url}/v3/{path}", data=json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return dict(json.loads(answer.read()))

    encoded = base64.b64encode(key.encode()).decode()
    deleted = call("kv/deleterange", {"key": encoded})
    assert deleted.get("deleted") == "1", deleted
    revision = int(deleted["header"]["revision"])
    call("kv/compaction", {"revision": revision, "physical": True})


async def test_adapter_mode_fires_only_ready_sources_at_status_sink_uri(
    control_plane: ControlPlane, namespace: str, sink: RecordingSink, run_mtping: Any
) -> None:
    mtping = run_mtping("--mode=adapter")
    await mtping.wait_ready()
    elsewhere = "http://127.0.0.1:9/never-used/"
    for name in ("ready", "not-ready"):
        create_source(
            control_plane, namespace, name, {"schedule": "* * * * * *", "sink": {"uri": elsewhere}}
        )
    mark_ready(control_plane, namespace, "ready", sink.url)

    await sink.wait_for(count_from("ready", 3), timeout=8)

    assert sink.from_source("not-ready") == []
