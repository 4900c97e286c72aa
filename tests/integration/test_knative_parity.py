"""Side by side with Knative's own pingsource-mt-adapter, and into Knative's event_display.

Both adapters run against the same apiserver and the same PingSources (made Ready the way
Knative's controller would, by writing status) and post to one recording sink. Per source,
everything a consumer reads must be identical; the documented differences are `ce-id`
(deterministic in mtping, random in Knative) and `ce-time` (the scheduled instant in mtping, the
send time after a random sleep in Knative), plus transport headers.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

from tests.harness.controlplane import ControlPlane
from tests.harness.peers import start_event_display, start_knative_mtping, wait_until_listening
from tests.harness.sinks import Received, RecordingSink
from tests.integration.support import create_source, mark_ready

DOCUMENTED_DIFFERENCES = {"ce-id", "ce-time"}
TRANSPORT_HEADERS = {
    "host",
    "user-agent",
    "content-length",
    "accept",
    "accept-encoding",
    "connection",
    "traceparent",
    "tracestate",
}
SOURCES: dict[str, dict[str, Any]] = {
    "json": {
        "contentType": "application/json",
        "data": '{"greeting": "hi"}',
        "ceOverrides": {"extensions": {"team": "parity", "shard": "7"}},
    },
    "b64": {"contentType": "text/plain", "dataBase64": base64.b64encode(b"plain bytes").decode()},
    "bare": {},
}


def _by_adapter(received: list[Received], name: str) -> dict[str, Received]:
    """The first event of source `name` from each adapter, told apart by User-Agent."""
    firsts: dict[str, Received] = {}
    for request in received:
        if request.headers["ce-source"].endswith(f"/{name}"):
            who = (
                "mtping"
                if request.headers.get("user-agent", "").startswith("mtping")
                else "knative"
            )
            firsts.setdefault(who, request)
    return firsts


def _consumer_view(request: Received) -> dict[str, str]:
    return {
        name.lower(): value
        for name, value in request.headers.items()
        if name.lower() not in TRANSPORT_HEADERS | DOCUMENTED_DIFFERENCES
    }


async def test_mtping_and_knative_send_the_same_events(
    control_plane: ControlPlane,
    namespace: str,
    sink: RecordingSink,
    run_mtping: Any,
    tmp_path: Path,
) -> None:
    mtping = run_mtping("--mode=adapter")
    knative = start_knative_mtping(control_plane.kubeconfig, log_dir=tmp_path)
    try:
        await mtping.wait_ready()
        for name, spec in SOURCES.items():
            create_source(
                control_plane,
                namespace,
                name,
                {"schedule": "*/2 * * * * *", "sink": {"uri": sink.url}, **spec},
            )
            mark_ready(control_plane, namespace, name, sink.url)

        await sink.wait_for(
            lambda got: all(len(_by_adapter(got, name)) == 2 for name in SOURCES), timeout=30
        )
    finally:
        knative.stop()

    for name in SOURCES:
        ours, theirs = (
            _by_adapter(sink.received, name)["mtping"],
            _by_adapter(sink.received, name)["knative"],
        )
        assert _consumer_view(ours) == _consumer_view(theirs), name
        assert ours.body == theirs.body, name
        assert ours.headers["ce-id"] != theirs.headers["ce-id"]
    # Ours carries the scheduled instant; Knative's the send time after up to 500 ms of sleep.
    assert all(
        r.ce_time.microsecond == 0
        for r in sink.received
        if r.headers.get("user-agent", "").startswith("mtping")
    )


async def test_events_reach_knatives_event_display(
    control_plane: ControlPlane, namespace: str, run_mtping: Any, tmp_path: Path
) -> None:
    display = start_event_display(log_dir=tmp_path)
    try:
        await asyncio.wait_for(wait_until_listening(display), timeout=15)
        mtping = run_mtping()
        await mtping.wait_ready()
        create_source(
            control_plane,
            namespace,
            "to-display",
            {
                "schedule": "* * * * * *",
                "contentType": "application/json",
                "data": '{"message": "hello, world!"}',
                "sink": {"uri": display.url},
            },
        )
        log = await asyncio.wait_for(display.wait_for_log("hello, world!"), timeout=10)
    finally:
        display.stop()

    assert "type: dev.knative.sources.ping" in log
    assert f"source: /apis/v1/namespaces/{namespace}/pingsources/to-display" in log
