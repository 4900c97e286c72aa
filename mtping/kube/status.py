"""Standalone mode's PingSource status writer: PATCH /status only when something changed.

It observes the registry (each source's outcome: scheduled, unresolved, invalid) and the
engine (each finished delivery). Per source it keeps what it last saw published (compact,
`model.status.PublishedStatus`), so a relist, a resync, a restart, or the MODIFIED event of its
own write computes `desired == current` and writes nothing. Differences are queued and written
by a few workers as JSON merge patches of `.status` carrying `metadata.resourceVersion`, so a
write based on a stale read fails with 409; it then re-reads the object and retries. A 404
means the source is gone: dropped. Other failures are retried after a delay.

`status.lastDelivery` is not written per tick: deliveries are recorded in memory, and every
`delivery_interval` seconds the sources whose verdict (result, HTTP status, error) changed,
or whose published report is `delivery_refresh` seconds old, get one write. Ready transitions
become aggregated Events (`Ready`, `SinkNotFound`, `InvalidSpec`) once written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from mtping import metrics
from mtping.delivery import Outcome as DeliveryOutcome
from mtping.event import EVENT_TYPE, event_source
from mtping.kube.errors import ApiStatusError, ApiUnavailable, KubeError
from mtping.kube.watching import PINGSOURCES, RawObject
from mtping.model import SourceKey
from mtping.model.status import (
    DeliveryReport,
    Note,
    Outcome,
    PublishedStatus,
    Unresolved,
    delivery_due,
    delivery_json,
    delivery_report,
    desired_status,
    read_delivery,
    read_published,
    status_patch,
    transition_note,
)

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
MAX_ATTEMPTS = 3


class StatusClient(Protocol):
    """The two apiserver calls the writer makes; raise KubeError (ApiStatusError with the
    HTTP status for 404 and 409)."""

    async def patch_status(self, key: SourceKey, body: RawObject) -> RawObject: ...

    async def get(self, key: SourceKey) -> RawObject: ...


class NoteRecorder(Protocol):
    def record(self, source: SourceKey, uid: str, note: Note, when: datetime) -> None: ...

    def forget(self, source: SourceKey) -> None: ...


class ApiStatusClient:
    """StatusClient over kubernetes_asyncio, with a request timeout (the client has none)."""

    def __init__(self, api: ApiClient, *, request_timeout: float = 10.0) -> None:
        self._api = api
        self._timeout = request_timeout

    async def patch_status(self, key: SourceKey, body: RawObject) -> RawObject:
        # call_api: the generated method would send a dict as a JSON Patch, not a merge patch.
        return await self._call("PATCH", f"{_object_path(key)}/status", body)

    async def get(self, key: SourceKey) -> RawObject:
        return await self._call("GET", _object_path(key), None)

    async def _call(self, method: str, path: str, body: RawObject | None) -> RawObject:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = MERGE_PATCH
        return await _call(
            self._api.call_api(
                path,
                method,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                response_types_map={200: "object"},
                _return_http_data_only=True,
                _request_timeout=self._timeout,
            )
        )


def _object_path(key: SourceKey) -> str:
    r = PINGSOURCES
    return f"/apis/{r.group}/{r.version}/namespaces/{key.namespace}/{r.plural}/{key.name}"


async def _call(request: Any) -> RawObject:
    try:
        answer: RawObject = await request
    except ApiException as error:
        raise ApiStatusError(error.status, str(error.reason)) from error
    except (aiohttp.ClientError, TimeoutError, OSError) as error:
        raise ApiUnavailable(f"apiserver unreachable: {error!r}") from error
    return answer


@dataclass(slots=True)
class _Source:
    uid: str
    generation: int
    """The generation `outcome` was computed from: published as observedGeneration."""
    version: str
    """resourceVersion of the newest object seen: the precondition of the next write."""
    current: PublishedStatus
    delivery: DeliveryReport | None
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class _Finished:
    instant: datetime
    at: datetime
    outcome: DeliveryOutcome


def wall_now() -> datetime:
    return datetime.now(UTC)


class StatusWriter:
    """SourceObserver and DeliveryObserver of standalone mode (see the module docstring)."""

    def __init__(
        self,
        client: StatusClient,
        *,
        notes: NoteRecorder | None = None,
        delivery_interval: float = 60.0,
        delivery_refresh: float = 3600.0,
        workers: int = 8,
        retry_delay: float = 5.0,
        clock: Callable[[], datetime] = wall_now,
    ) -> None:
        self._client = client
        self._notes = notes
        self._delivery_interval = delivery_interval
        self._delivery_refresh = delivery_refresh
        self._workers = workers
        self._retry_delay = retry_delay
        self._clock = clock
        self._sources: dict[SourceKey, _Source] = {}
        self._finished: dict[SourceKey, _Finished] = {}
        """The latest delivery of each source since the last flush."""
        self._delivery_due: dict[SourceKey, DeliveryReport] = {}
        self._queue: asyncio.Queue[SourceKey] = asyncio.Queue()
        self._queued: set[SourceKey] = set()
        self._busy: set[SourceKey] = set()
        self._again: set[SourceKey] = set()

    @property
    def pending(self) -> int:
        """Sources with a write queued or in progress."""
        return len(self._queued) + len(self._busy)

    # --- SourceObserver ------------------------------------------------------------------

    def source_changed(self, key: SourceKey, obj: RawObject, outcome: Outcome) -> None:
        metadata = obj.get("metadata") or {}
        status = obj.get("status")
        generation = metadata.get("generation")
        self._sources[key] = _Source(
            uid=str(metadata.get("uid") or ""),
            generation=generation if isinstance(generation, int) else 0,
            version=str(metadata.get("resourceVersion") or ""),
            current=read_published(status),
            delivery=read_delivery(status),
            outcome=outcome,
        )
        self._consider(key)

    def source_reresolved(self, key: SourceKey, outcome: Outcome) -> None:
        source = self._sources.get(key)
        if source is not None:
            source.outcome = outcome
            self._consider(key)

    def source_deleted(self, key: SourceKey) -> None:
        if self._notes is not None:
            self._notes.forget(key)
        self._sources.pop(key, None)
        self._finished.pop(key, None)
        self._delivery_due.pop(key, None)

    # --- DeliveryObserver ----------------------------------------------------------------

    def delivery_finished(
        self, source: SourceKey, instant: datetime, outcome: DeliveryOutcome
    ) -> None:
        if self._delivery_interval > 0:
            self._finished[source] = _Finished(instant, self._clock(), outcome)

    def flush_deliveries(self) -> None:
        """Queue a lastDelivery write for each source whose report is due."""
        finished, self._finished = self._finished, {}
        now = self._clock()
        for key, done in finished.items():
            source = self._sources.get(key)
            if source is None:
                continue
            report = _report(done)
            if delivery_due(
                published=source.delivery, latest=report, now=now, refresh=self._delivery_refresh
            ):
                self._delivery_due[key] = report
                self._enqueue(key)

    # --- writing -------------------------------------------------------------------------

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for number in range(self._workers):
                group.create_task(self._work(), name=f"status writer {number}")
            if self._delivery_interval > 0:
                group.create_task(self._flush_forever(), name="lastDelivery flush")

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self._delivery_interval)
            self.flush_deliveries()

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            if key in self._busy:  # another worker is on it: it goes again after that one
                self._again.add(key)
                continue
            self._busy.add(key)
            try:
                await self.sync(key)
            finally:
                self._busy.discard(key)
            if key in self._again:
                self._again.discard(key)
                self._enqueue(key)

    async def write_queued(self) -> None:
        """Write, one by one, what is queued now (what the workers would do)."""
        while not self._queue.empty():
            key = self._queue.get_nowait()
            self._queued.discard(key)
            await self.sync(key)

    async def sync(self, key: SourceKey) -> None:
        """Write what `key`'s status lacks, if anything; never raises KubeError."""
        for _ in range(MAX_ATTEMPTS):
            try:
                again = await self._attempt(key)
            except KubeError as error:
                if not (isinstance(error, ApiStatusError) and error.status == 404):
                    self._retry_later(key, error)
                return  # 404: deleted meanwhile; its DELETED event follows
            if not again:
                return
        self._retry_later(key, KubeError(f"still conflicting after {MAX_ATTEMPTS} attempts"))

    async def _attempt(self, key: SourceKey) -> bool:
        """One write; True when it conflicted and the object was read again to retry."""
        try:
            await self._write(key)
        except ApiStatusError as error:
            if error.status != 409:
                raise
            metrics.STATUS_WRITES.labels(result="conflict").inc()
            return await self._reread(key)
        return False

    async def _write(self, key: SourceKey) -> None:
        """One PATCH, if anything is to be written."""
        source = self._sources.get(key)
        if source is None:
            return
        desired = self._desired(key, source)
        status = status_patch(source.current, desired) if desired is not None else {}
        report = self._delivery_due.get(key)
        if report is not None:
            status["lastDelivery"] = delivery_json(report)
        if not status:
            return
        body: RawObject = {"status": status}
        if desired is not None and desired != source.current:
            body["metadata"] = {"resourceVersion": source.version}
        written = await self._client.patch_status(key, body)
        metrics.STATUS_WRITES.labels(result="written").inc()
        if self._delivery_due.get(key) is report:
            self._delivery_due.pop(key, None)
        before = source.current
        self._absorb(source, written)
        if desired is not None:
            self._note(key, source, before, desired)

    async def _reread(self, key: SourceKey) -> bool:
        """Refresh `key` from the apiserver after a conflict; False when it is gone."""
        obj = await self._client.get(key)
        source = self._sources.get(key)
        if source is None:
            return False
        self._absorb(source, obj)
        return True

    def _absorb(self, source: _Source, obj: RawObject) -> None:
        status = obj.get("status")
        source.version = str((obj.get("metadata") or {}).get("resourceVersion") or source.version)
        source.current = read_published(status)
        source.delivery = read_delivery(status)

    def _note(
        self, key: SourceKey, source: _Source, before: PublishedStatus, after: PublishedStatus
    ) -> None:
        note = transition_note(before, after)
        if note is not None and self._notes is not None:
            self._notes.record(key, source.uid, note, self._clock())

    def _retry_later(self, key: SourceKey, error: Exception) -> None:
        metrics.STATUS_WRITES.labels(result="failed").inc()
        log.warning(
            "could not write the status of %s, retrying in %.0fs: %s", key, self._retry_delay, error
        )
        asyncio.get_running_loop().call_later(self._retry_delay, self._enqueue, key)

    # --- deciding ------------------------------------------------------------------------

    def _consider(self, key: SourceKey) -> None:
        source = self._sources[key]
        desired = self._desired(key, source)
        if desired is not None and desired != source.current:
            self._enqueue(key)

    def _desired(self, key: SourceKey, source: _Source) -> PublishedStatus | None:
        """The status to publish; None while there is nothing to say yet."""
        outcome = source.outcome
        if isinstance(outcome, Unresolved) and outcome.waiting:
            return None
        return desired_status(
            current=source.current,
            outcome=outcome,
            generation=source.generation,
            ce_attributes=((EVENT_TYPE, event_source(key)),),
            now=self._clock(),
        )

    def _enqueue(self, key: SourceKey) -> None:
        if key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)


def _report(done: _Finished) -> DeliveryReport:
    return delivery_report(
        delivered=done.outcome.delivered,
        scheduled=done.instant,
        finished=done.at,
        attempts=done.outcome.attempts,
        status_code=done.outcome.status,
        error=done.outcome.error,
    )
