"""Standalone mode on the real control plane: mtping resolves sinks and writes status itself.

mtping runs as config/'s ServiceAccount with exactly config/rbac.yaml (its aggregated
addressable-resolver role filled in as kube-controller-manager would, see tests.harness.rbac),
without the admission webhook. Tests assert on what the apiserver stores (`.status`, Events,
its own request counters) and on what arrives at real HTTP sinks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import rbac
from tests.harness.controlplane import ControlPlane
from tests.harness.manifests import load_manifests
from tests.harness.rest import ApiError
from tests.harness.sinks import RecordingSink
from tests.integration.support import (
    count_from,
    create_source,
    patch_spec,
    pingsource_path,
)

DATA = Path(__file__).resolve().parent / "data"
SAMPLES = Path(__file__).resolve().parents[2] / "config" / "samples"
EVERY_SECOND = "* * * * * *"
NEVER_DURING_A_TEST = "0 0 1 1 *"  # once a year: no delivery, so no lastDelivery write
OIDC_DISABLED = "authentication-oidc feature disabled"
RESYNC_SOURCES = int(os.environ.get("MTPING_RESYNC_SOURCES", "2000"))

Obj = dict[str, Any]


@pytest.fixture(autouse=True)
def aggregated_roles(control_plane: ControlPlane, adapter_kubeconfig: Path) -> None:
    """Aggregate ClusterRoles again, as the controller-manager does continuously: re-applying
    config/rbac.yaml (other tests do) empties `mtping-addressable-resolver` until then."""
    rbac.aggregate(control_plane.rest)


# -- helpers ---------------------------------------------------------------------------------


def get_source(plane: ControlPlane, namespace: str, name: str) -> Obj:
    return plane.rest.get(pingsource_path(namespace, name))


def conditions(obj: Obj) -> dict[str, Obj]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def ready(obj: Obj) -> str | None:
    return conditions(obj).get("Ready", {}).get("status")


async def wait_for_source(
    plane: ControlPlane,
    namespace: str,
    name: str,
    check: Callable[[Obj], bool],
    *,
    timeout: float = 10.0,
) -> Obj:
    """Poll the stored PingSource until `check` holds; the object then."""
    obj: Obj = {}
    try:
        async with asyncio.timeout(timeout):
            while True:
                obj = await asyncio.to_thread(get_source, plane, namespace, name)
                if check(obj):
                    return obj
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"{namespace}/{name} never matched; last status: {obj.get('status')}")


def events_about(plane: ControlPlane, namespace: str, name: str) -> list[Obj]:
    listed = plane.rest.get(f"/api/v1/namespaces/{namespace}/events")
    return [e for e in listed.get("items", []) if e["involvedObject"]["name"] == name]


def status_patches(plane: ControlPlane) -> int:
    """PATCHes of pingsources/status the apiserver has served (its own counter)."""
    text = plane.rest.request("GET", "/metrics", accept="text/plain")["text"]
    total = 0.0
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{") and all(
            label in line
            for label in ('verb="PATCH"', 'resource="pingsources"', 'subresource="status"')
        ):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def service(name: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}]},
    }


# -- the tutorial ----------------------------------------------------------------------------


@pytest.fixture
def tutorial(control_plane: ControlPlane) -> Iterator[None]:
    """The tutorial's objects in `default`, as it has them; deleted afterwards."""
    yield
    for path in (
        pingsource_path("default", "test-ping-source"),
        "/api/v1/namespaces/default/services/event-display",
        "/apis/apps/v1/namespaces/default/deployments/event-display",
    ):
        try:
            control_plane.rest.request("DELETE", path)
        except ApiError as error:
            if error.status != 404:
                raise


async def test_the_tutorial_applied_unchanged_becomes_ready_at_the_service_url(
    control_plane: ControlPlane, tutorial: None, run_mtping: Any
) -> None:
    mtping = run_mtping()
    await mtping.wait_ready()
    control_plane.apply_manifest(DATA / "event-display.yaml", namespace="default")
    control_plane.apply_manifest(SAMPLES / "hello-world.yaml", namespace="default")

    source = await wait_for_source(
        control_plane, "default", "test-ping-source", lambda obj: ready(obj) == "True"
    )

    status = source["status"]
    assert status["sinkUri"] == "http://event-display.default.svc.cluster.local/"
    assert status["observedGeneration"] == source["metadata"]["generation"]
    assert status["ceAttributes"] == [
        {
            "type": "dev.knative.sources.ping",
            "source": "/apis/v1/namespaces/default/pingsources/test-ping-source",
        }
    ]
    found = conditions(source)
    assert sorted(found) == ["Deployed", "OIDCIdentityCreated", "Ready", "SinkProvided"]
    assert {kind: c["status"] for kind, c in found.items()} == dict.fromkeys(found, "True")
    assert found["OIDCIdentityCreated"]["reason"] == OIDC_DISABLED
    assert "finalizers" not in source["metadata"]

    table = control_plane.rest.request(
        "GET",
        pingsource_path("default"),
        accept="application/json;as=Table;v=v1;g=meta.k8s.io",
    )
    columns = [column["name"] for column in table["columnDefinitions"]]
    assert columns == ["Name", "Sink", "Schedule", "Age", "Ready", "Reason"]
    (row,) = [r["cells"] for r in table["rows"] if r["cells"][0] == "test-ping-source"]
    assert row[1:3] == ["http://event-display.default.svc.cluster.local/", "*/1 * * * *"]
    assert row[4:] == ["True", None]  # Ready, and no Reason when Ready
    assert re.fullmatch(r"\d+s", row[3])


# -- Services --------------------------------------------------------------------------------


async def test_a_service_sink_follows_the_service_and_transition_times_hold_still(
    control_plane: ControlPlane, namespace: str, run_mtping: Any
) -> None:
    mtping = run_mtping()
    await mtping.wait_ready()
    to_service = {"ref": {"apiVersion": "v1", "kind": "Service", "name": "display"}}
    create_source(
        control_plane, namespace, "ping", {"schedule": NEVER_DURING_A_TEST, "sink": to_service}
    )

    missing = await wait_for_source(
        control_plane, namespace, "ping", lambda obj: ready(obj) == "False"
    )
    control_plane.apply(service("display"), namespace=namespace)
    found = await wait_for_source(
        control_plane, namespace, "ping", lambda obj: ready(obj) == "True"
    )
    patch_spec(control_plane, namespace, "ping", {"data": "second generation"})
    updated = await wait_for_source(
        control_plane, namespace, "ping", lambda obj: obj["status"]["observedGeneration"] == 2
    )
    control_plane.rest.request("DELETE", f"/api/v1/namespaces/{namespace}/services/display")
    gone = await wait_for_source(
        control_plane, namespace, "ping", lambda obj: ready(obj) == "False"
    )
    await asyncio.sleep(1.5)  # transition Events are flushed every second

    sink_provided = conditions(missing)["SinkProvided"]
    assert (sink_provided["status"], sink_provided["reason"]) == ("False", "NotFound")
    assert (
        f'Service "display" (v1) in namespace "{namespace}" not found' in sink_provided["message"]
    )
    assert conditions(missing)["Ready"]["message"] == sink_provided["message"]
    assert conditions(missing)["Deployed"]["status"] == "False"
    assert found["status"]["sinkUri"] == f"http://display.{namespace}.svc.cluster.local/"
    assert conditions(updated) == conditions(found), "a new generation is no transition"
    assert conditions(gone)["SinkProvided"]["reason"] == "NotFound"
    assert "sinkUri" not in gone["status"]
    before = conditions(missing)["OIDCIdentityCreated"]["lastTransitionTime"]
    assert conditions(gone)["OIDCIdentityCreated"]["lastTransitionTime"] == before
    reasons = sorted(e["reason"] for e in events_about(control_plane, namespace, "ping"))
    assert reasons == ["Ready", "SinkNotFound"]
    assert [
        e["count"]
        for e in events_about(control_plane, namespace, "ping")
        if e["reason"] == "SinkNotFound"
    ] == [2]


# -- Addressable custom resources ------------------------------------------------------------


@pytest.fixture(scope="module")
def addressables(control_plane: ControlPlane, adapter_kubeconfig: Path) -> None:
    """The test CRDs, and the labelled ClusterRole aggregated into mtping's resolver role."""
    manifest = DATA / "addressables.yaml"
    control_plane.install_crds([manifest])
    for obj in load_manifests(manifest):
        if obj["kind"] == "ClusterRole":
            control_plane.apply(obj)
    granted = rbac.aggregate(control_plane.rest)
    assert any(
        "addressables" in rule["resources"] for rule in granted["mtping-addressable-resolver"]
    )


def sink_object(name: str, url: str) -> Obj:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Sink",
        "metadata": {"name": name},
        "status": {"address": {"url": url}},
    }


async def test_an_addressable_resolves_from_its_status_even_when_created_after_the_source(
    control_plane: ControlPlane,
    namespace: str,
    sink: RecordingSink,
    run_mtping: Any,
    addressables: None,
) -> None:
    mtping = run_mtping()
    await mtping.wait_ready()
    ref = {"apiVersion": "example.com/v1", "kind": "Sink", "name": "target"}
    create_source(
        control_plane,
        namespace,
        "early",
        {"schedule": EVERY_SECOND, "sink": {"ref": ref, "uri": "from-ping"}},
    )
    missing = await wait_for_source(
        control_plane, namespace, "early", lambda obj: ready(obj) == "False"
    )

    created_at = time.monotonic()
    control_plane.apply(sink_object("target", sink.url), namespace=namespace)
    found = await wait_for_source(
        control_plane, namespace, "early", lambda obj: ready(obj) == "True"
    )
    became_ready = time.monotonic() - created_at
    await sink.wait_for(count_from("early", 2), timeout=5)
    path = f"/apis/example.com/v1/namespaces/{namespace}/addressables/target"
    control_plane.rest.request("DELETE", path)
    gone = await wait_for_source(
        control_plane, namespace, "early", lambda obj: ready(obj) == "False"
    )
    deleted_at = time.time()
    await asyncio.sleep(1.5)

    assert 'Sink "target" (example.com/v1)' in conditions(missing)["SinkProvided"]["message"]
    assert became_ready < 3, f"Ready {became_ready:.2f}s after its sink appeared"
    assert found["status"]["sinkUri"] == sink.url.rstrip("/") + "/from-ping"
    assert all(r.arrived < deleted_at + 1 for r in sink.from_source("early"))
    sink_provided = conditions(gone)["SinkProvided"]
    assert (sink_provided["status"], sink_provided["reason"]) == ("False", "NotFound")
    print(f"created-before-sink: Ready {became_ready:.2f}s after the sink appeared")


async def test_ref_address_picks_a_named_address_and_survives_the_crd_schema(
    control_plane: ControlPlane,
    namespace: str,
    sink: RecordingSink,
    run_mtping: Any,
    addressables: None,
) -> None:
    target = sink_object("multi", "http://127.0.0.1:9/unused")
    target["status"] = {
        "addresses": [
            {"name": "first", "url": "http://127.0.0.1:9/first"},
            {"name": "second", "url": sink.url},
        ]
    }
    control_plane.apply(target, namespace=namespace)
    mtping = run_mtping()
    await mtping.wait_ready()
    ref = {"apiVersion": "example.com/v1", "kind": "Sink", "name": "multi", "address": "second"}
    create_source(
        control_plane, namespace, "named", {"schedule": EVERY_SECOND, "sink": {"ref": ref}}
    )

    found = await wait_for_source(
        control_plane, namespace, "named", lambda obj: ready(obj) == "True"
    )
    await sink.wait_for(count_from("named", 1), timeout=5)

    assert found["spec"]["sink"]["ref"]["address"] == "second"  # not pruned by the schema
    assert found["status"]["sinkUri"] == sink.url


async def test_a_kind_mtping_may_not_read_says_which_role_is_missing(
    control_plane: ControlPlane, namespace: str, run_mtping: Any, addressables: None
) -> None:
    mtping = run_mtping()
    await mtping.wait_ready()
    ref = {"apiVersion": "example.com/v1", "kind": "Hidden", "name": "secret"}
    create_source(
        control_plane, namespace, "nosy", {"schedule": EVERY_SECOND, "sink": {"ref": ref}}
    )

    refused = await wait_for_source(
        control_plane, namespace, "nosy", lambda obj: ready(obj) == "False"
    )

    message = conditions(refused)["Ready"]["message"]
    assert "may not list hiddens.example.com" in message
    assert "duck.knative.dev/addressable=true" in message


# -- invalid sources -------------------------------------------------------------------------


async def test_an_invalid_source_is_not_ready_with_the_field_and_one_event_and_harms_nobody(
    control_plane: ControlPlane, namespace: str, sink: RecordingSink, run_mtping: Any
) -> None:
    mtping = run_mtping()
    await mtping.wait_ready()
    create_source(
        control_plane, namespace, "earthling", {"schedule": EVERY_SECOND, "sink": {"uri": sink.url}}
    )
    await sink.wait_for(count_from("earthling", 1), timeout=5)
    # The CRD cannot know IANA zone names, so without the webhook this reaches the store.
    martian = {"schedule": EVERY_SECOND, "timezone": "Mars/Olympus_Mons", "sink": {"uri": sink.url}}
    create_source(control_plane, namespace, "martian", martian)

    refused = await wait_for_source(
        control_plane, namespace, "martian", lambda obj: ready(obj) == "False"
    )
    patch_spec(control_plane, namespace, "martian", {"data": "still from Mars"})
    await wait_for_source(
        control_plane, namespace, "martian", lambda obj: obj["status"]["observedGeneration"] == 2
    )
    await asyncio.sleep(2.5)  # Event flushes happen every second

    ready_condition = conditions(refused)["Ready"]
    assert ready_condition["reason"] == "InvalidSpec"
    assert "spec.timezone" in ready_condition["message"]
    assert "Mars/Olympus_Mons" in ready_condition["message"]
    (event,) = events_about(control_plane, namespace, "martian")
    assert (event["type"], event["reason"], event["count"]) == ("Warning", "InvalidSpec", 1)
    assert "spec.timezone" in event["message"]
    assert sink.from_source("martian") == []
    assert mtping.metric("mtping_sources_unscheduled", reason="invalid") == 1
    seconds = sorted(int(r.ce_time.timestamp()) for r in sink.from_source("earthling"))
    assert seconds == list(range(seconds[0], seconds[-1] + 1)), "the valid source missed a tick"
    assert len(seconds) >= 3


# -- lastDelivery ----------------------------------------------------------------------------


async def test_last_delivery_shows_the_latest_result_without_a_write_per_tick(
    control_plane: ControlPlane, namespace: str, run_mtping: Any
) -> None:
    failing = {"now": False}
    flaky = await RecordingSink(respond=lambda _r, _h: 503 if failing["now"] else 202).start()
    try:
        mtping = run_mtping("--status-interval=1", "--max-attempts=1")
        await mtping.wait_ready()
        create_source(
            control_plane,
            namespace,
            "ticker",
            {"schedule": EVERY_SECOND, "sink": {"uri": flaky.url}},
        )
        delivered = await wait_for_source(
            control_plane, namespace, "ticker", lambda obj: "lastDelivery" in obj.get("status", {})
        )
        writes_before = status_patches(control_plane)
        await asyncio.sleep(4)  # four ticks, all delivered: the verdict does not change
        steady_writes = status_patches(control_plane) - writes_before
        failing["now"] = True
        failed = await wait_for_source(
            control_plane,
            namespace,
            "ticker",
            lambda obj: obj["status"]["lastDelivery"]["result"] == "Failed",
        )
    finally:
        await flaky.stop()

    first = delivered["status"]["lastDelivery"]
    assert (first["result"], first["statusCode"], first["attempts"]) == ("Delivered", 202, 1)
    assert "error" not in first
    assert first["scheduledTime"] <= first["time"]
    assert steady_writes == 0
    last = failed["status"]["lastDelivery"]
    assert (last["statusCode"], last["error"]) == (503, "503 Service Unavailable")
    assert last["scheduledTime"] > first["scheduledTime"]
    assert ready(failed) == "True"  # a failing sink is still a resolved sink


# -- no finalizers ---------------------------------------------------------------------------


async def test_deleting_a_source_while_mtping_is_down_does_not_hang(
    control_plane: ControlPlane, namespace: str, run_mtping: Any
) -> None:
    mtping = run_mtping()
    await mtping.wait_ready()
    create_source(
        control_plane,
        namespace,
        "doomed",
        {"schedule": EVERY_SECOND, "sink": {"uri": "http://127.0.0.1:9/"}},
    )
    seen = await wait_for_source(
        control_plane, namespace, "doomed", lambda obj: ready(obj) == "True"
    )
    mtping.stop()

    control_plane.rest.request("DELETE", pingsource_path(namespace, "doomed"))

    assert "finalizers" not in seen["metadata"]
    with pytest.raises(ApiError) as gone:
        get_source(control_plane, namespace, "doomed")
    assert gone.value.status == 404


# -- resync cost -----------------------------------------------------------------------------


async def test_a_restart_with_thousands_of_sources_writes_no_status(
    control_plane: ControlPlane, namespace: str, run_mtping: Any
) -> None:
    """MTPING_RESYNC_SOURCES (default 2000) sources, half to a Service, half to a URI: after
    they are all Ready, a restart (a full relist, every object new to the process) must not
    write a single status."""
    control_plane.apply(service("display"), namespace=namespace)
    to_service = {"ref": {"apiVersion": "v1", "kind": "Service", "name": "display"}}
    to_uri = {"uri": "http://127.0.0.1:9/"}
    began = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        list(
            pool.map(
                lambda number: create_source(
                    control_plane,
                    namespace,
                    f"s{number:05d}",
                    {"schedule": NEVER_DURING_A_TEST, "sink": to_service if number % 2 else to_uri},
                ),
                range(RESYNC_SOURCES),
            )
        )
    created = time.monotonic() - began
    mtping = run_mtping()
    await mtping.wait_ready(timeout=120)
    began = time.monotonic()
    async with asyncio.timeout(300):
        while mtping.metric("mtping_status_writes_total", result="written") < RESYNC_SOURCES:
            await asyncio.sleep(0.5)
    all_written = time.monotonic() - began
    listed = control_plane.rest.get(pingsource_path(namespace))["items"]
    assert sum(1 for obj in listed if ready(obj) == "True") == RESYNC_SOURCES
    mtping.stop()

    before = status_patches(control_plane)
    restarted = run_mtping()
    await restarted.wait_ready(timeout=120)
    async with asyncio.timeout(120):  # until every source is scheduled again
        while restarted.metric("mtping_sources_scheduled") < RESYNC_SOURCES:
            await asyncio.sleep(0.5)
    await asyncio.sleep(3)
    after = status_patches(control_plane)

    rss_mib = restarted.process.rss_kib() / 1024
    written_by_restarted = restarted.metric("mtping_status_writes_total", result="written")
    restarted.stop()
    # The namespace fixture's one DELETE would outlast its timeout with 10k sources.
    control_plane.rest.request("DELETE", pingsource_path(namespace), timeout=600)

    assert after - before == 0
    assert written_by_restarted == 0
    print(
        f"{RESYNC_SOURCES} sources: created in {created:.1f}s, statuses written in "
        f"{all_written:.1f}s; restart: {after - before} status writes, RSS {rss_mib:.0f} MiB"
    )
