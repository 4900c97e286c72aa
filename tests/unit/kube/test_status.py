"""The status writer against an in-memory apiserver: writes on change only, retries conflicts.

`Store` stands in for the apiserver's pingsources/status: JSON merge patches, with the
`metadata.resourceVersion` precondition answered by 409 as the apiserver does, and a scripted
failure per request when a test asks for one.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mtping.delivery import Outcome as DeliveryOutcome
from mtping.kube.errors import ApiStatusError, ApiUnavailable, KubeError
from mtping.kube.status import StatusWriter
from mtping.model import SourceKey
from mtping.model.status import Invalid, Note, Scheduled, Unresolved
from tests.unit.kube.conftest import sample

KEY = SourceKey("team", "ping")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SINK = Scheduled("http://display.team.svc.cluster.local/")
Obj = dict[str, Any]


def merge(target: Obj, patch: Obj) -> Obj:
    """RFC 7386 JSON merge patch."""
    merged = dict(target)
    for field, value in patch.items():
        if value is None:
            merged.pop(field, None)
        elif isinstance(value, dict) and isinstance(merged.get(field), dict):
            merged[field] = merge(merged[field], value)
        else:
            merged[field] = value
    return merged


class Store:
    def __init__(self) -> None:
        self.objects: dict[SourceKey, Obj] = {}
        self.patches: list[Obj] = []
        self.gets = 0
        self.failures: deque[KubeError] = deque()

    def add(self, key: SourceKey = KEY, status: Obj | None = None, generation: int = 1) -> Obj:
        obj: Obj = {
            "metadata": {
                "namespace": key.namespace,
                "name": key.name,
                "uid": f"uid-{key.name}",
                "generation": generation,
                "resourceVersion": "1",
            },
            "spec": {},
        }
        if status is not None:
            obj["status"] = status
        self.objects[key] = obj
        return copy.deepcopy(obj)

    def bump(self, key: SourceKey = KEY) -> None:
        """Someone else wrote the object: its resourceVersion moves on."""
        metadata = self.objects[key]["metadata"]
        metadata["resourceVersion"] = str(int(metadata["resourceVersion"]) + 1)

    async def patch_status(self, key: SourceKey, body: Obj) -> Obj:
        self.patches.append(body)
        if self.failures:
            raise self.failures.popleft()
        obj = self.objects.get(key)
        if obj is None:
            raise ApiStatusError(404, "NotFound")
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted is not None and wanted != obj["metadata"]["resourceVersion"]:
            raise ApiStatusError(409, "Conflict")
        obj["status"] = merge(obj.get("status") or {}, body["status"])
        self.bump(key)
        return copy.deepcopy(obj)

    async def get(self, key: SourceKey) -> Obj:
        self.gets += 1
        if key not in self.objects:
            raise ApiStatusError(404, "NotFound")
        return copy.deepcopy(self.objects[key])


class Notes:
    def __init__(self) -> None:
        self.recorded: list[tuple[SourceKey, str, Note]] = []

    def record(self, source: SourceKey, uid: str, note: Note, when: datetime) -> None:
        self.recorded.append((source, uid, note))

    def forget(self, source: SourceKey) -> None:
        self.recorded = [entry for entry in self.recorded if entry[0] != source]


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def writer(store: Store, notes: Notes | None = None, clock: Clock | None = None) -> StatusWriter:
    return StatusWriter(
        store, notes=notes, delivery_interval=60, delivery_refresh=3600, clock=clock or Clock()
    )


async def drain(status: StatusWriter) -> None:
    await status.write_queued()


def ready(store: Store, key: SourceKey = KEY) -> str | None:
    conditions = store.objects[key].get("status", {}).get("conditions", [])
    return next((c["status"] for c in conditions if c["type"] == "Ready"), None)


async def test_a_new_source_gets_its_status_in_one_patch_with_a_precondition() -> None:
    store, notes = Store(), Notes()
    status = writer(store, notes)

    status.source_changed(KEY, store.add(), SINK)
    await drain(status)

    [patch] = store.patches
    assert patch["metadata"] == {"resourceVersion": "1"}
    assert patch["status"]["sinkUri"] == SINK.sink_uri
    assert patch["status"]["observedGeneration"] == 1
    assert ready(store) == "True"
    assert notes.recorded == [
        (KEY, "uid-ping", Note("Normal", "Ready", f"ready: sending to {SINK.sink_uri}"))
    ]


async def test_its_own_write_coming_back_and_a_restart_cost_no_write() -> None:
    store = Store()
    status = writer(store)
    status.source_changed(KEY, store.add(), SINK)
    await drain(status)
    later = Clock()
    later.now = NOW + timedelta(hours=2)

    status.source_changed(KEY, copy.deepcopy(store.objects[KEY]), SINK)  # the MODIFIED event
    restarted = writer(store, clock=later)
    restarted.source_changed(KEY, copy.deepcopy(store.objects[KEY]), SINK)
    await drain(status)
    await drain(restarted)

    assert status.pending == restarted.pending == 0
    assert len(store.patches) == 1


async def test_while_its_kind_is_listed_nothing_is_published() -> None:
    store = Store()
    status = writer(store)

    status.source_changed(KEY, store.add(), Unresolved("waiting for Service", waiting=True))
    await drain(status)

    assert status.pending == 0
    assert store.patches == []


async def test_a_sink_going_away_is_written_with_a_warning_event() -> None:
    store, notes = Store(), Notes()
    status = writer(store, notes)
    status.source_changed(KEY, store.add(), SINK)
    await drain(status)

    status.source_reresolved(KEY, Unresolved('Service "display" not found'))
    await drain(status)

    assert ready(store) == "False"
    assert "sinkUri" not in store.objects[KEY]["status"]
    assert notes.recorded[-1][2] == Note(
        "Warning", "SinkNotFound", 'sink not resolved: Service "display" not found'
    )


async def test_a_conflict_reads_the_object_again_and_retries() -> None:
    store = Store()
    status = writer(store)
    status.source_changed(KEY, store.add(), SINK)
    store.bump()  # written meanwhile by someone else; the watch has not told us yet
    conflicts = sample("mtping_status_writes_total", result="conflict")

    await drain(status)

    assert len(store.patches) == 2
    assert store.gets == 1
    assert ready(store) == "True"
    assert sample("mtping_status_writes_total", result="conflict") == conflicts + 1


async def test_a_conflict_whose_reread_shows_the_status_written_stops_there() -> None:
    store = Store()
    stale = store.add()
    first = writer(store)
    first.source_changed(KEY, stale, SINK)
    await drain(first)
    second = writer(store)  # another replica, still holding the object from before the write

    second.source_changed(KEY, stale, SINK)
    await drain(second)

    assert [bool(patch.get("metadata")) for patch in store.patches] == [True, True]
    assert store.gets == 1  # after the 409: already as wanted, so no third patch


async def test_errors_other_than_conflicts_are_retried_later() -> None:
    store = Store()
    status = StatusWriter(store, retry_delay=0.01, clock=Clock())
    status.source_changed(KEY, store.add(), Invalid("spec.schedule: bad"))
    store.failures.append(ApiUnavailable("apiserver restarting"))
    failed = sample("mtping_status_writes_total", result="failed")

    await drain(status)
    assert ready(store) is None
    await asyncio.sleep(0.05)  # the retry is queued after retry_delay
    assert status.pending == 1
    await drain(status)

    assert ready(store) == "False"
    assert sample("mtping_status_writes_total", result="failed") == failed + 1


async def test_a_source_deleted_before_its_write_is_dropped() -> None:
    store = Store()
    status = StatusWriter(store, retry_delay=0.01, clock=Clock())
    status.source_changed(KEY, store.add(), SINK)
    del store.objects[KEY]  # its DELETED event is still on the way

    await drain(status)
    await asyncio.sleep(0.05)

    assert len(store.patches) == 1
    assert status.pending == 0


async def test_a_deleted_source_is_forgotten() -> None:
    store = Store()
    status = writer(store)
    status.source_changed(KEY, store.add(), SINK)

    status.source_deleted(KEY)
    await drain(status)

    assert store.patches == []


def delivered(ok: bool = True, status: int | None = 202) -> DeliveryOutcome:
    return DeliveryOutcome(
        delivered=ok,
        status=status,
        attempts=1 if ok else 3,
        error=None if ok else "503 Service Unavailable",
    )


async def test_last_delivery_is_one_write_per_flush_and_only_when_its_verdict_changes() -> None:
    store, clock = Store(), Clock()
    status = writer(store, clock=clock)
    status.source_changed(KEY, store.add(), SINK)
    await drain(status)
    for second in range(3):
        status.delivery_finished(KEY, NOW + timedelta(seconds=second), delivered())

    status.flush_deliveries()
    await drain(status)
    status.delivery_finished(KEY, NOW + timedelta(seconds=60), delivered())
    clock.now = NOW + timedelta(seconds=61)
    status.flush_deliveries()
    await drain(status)
    status.delivery_finished(KEY, NOW + timedelta(seconds=120), delivered(False, 503))
    status.flush_deliveries()
    await drain(status)

    written = [patch["status"]["lastDelivery"] for patch in store.patches[1:]]
    assert [(d["result"], d["statusCode"], d["scheduledTime"]) for d in written] == [
        ("Delivered", 202, "2026-03-01T12:00:02Z"),
        ("Failed", 503, "2026-03-01T12:02:00Z"),
    ]
    assert store.objects[KEY]["status"]["lastDelivery"]["error"] == "503 Service Unavailable"
    assert all("metadata" not in patch for patch in store.patches[1:])  # no precondition needed


async def test_no_last_delivery_when_the_interval_is_zero() -> None:
    store = Store()
    status = StatusWriter(store, delivery_interval=0, clock=Clock())
    status.source_changed(KEY, store.add(), SINK)
    await drain(status)

    status.delivery_finished(KEY, NOW, delivered())
    status.flush_deliveries()
    await drain(status)

    assert len(store.patches) == 1


@pytest.mark.parametrize("sources", [50])
async def test_run_writes_every_queued_source_with_its_workers(sources: int) -> None:
    store = Store()
    status = writer(store)
    keys = [SourceKey("team", f"s{number}") for number in range(sources)]
    for key in keys:
        status.source_changed(key, store.add(key), SINK)

    task = asyncio.create_task(status.run())
    try:
        async with asyncio.timeout(2):
            while status.pending or len(store.patches) < sources:
                await asyncio.sleep(0.005)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    assert len(store.patches) == sources
    assert all(ready(store, key) == "True" for key in keys)
