"""Events on PingSources, aggregated: never one per tick.

Warning `DeliveryFailed` when a source's deliveries give up, and (standalone mode) the Ready
transitions `Ready`, `SinkNotFound`, `InvalidSpec`. Tenants see them with `kubectl describe
pingsource` instead of reading adapter logs. Occurrences are counted in memory as they happen
(no I/O on the delivery path); a flush loop writes at most one Event create or patch per
(source, reason) per interval, carrying the count and the latest message, as Kubernetes' own
event aggregation does. A source that keeps failing has one Event whose count grows.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiClient, CoreV1Api
from kubernetes_asyncio.client.exceptions import ApiException

from mtping.delivery import Outcome
from mtping.model import SourceKey
from mtping.model.status import Note

log = logging.getLogger(__name__)

REASON = "DeliveryFailed"


@dataclass(slots=True)
class _Occurrences:
    uid: str
    note: Note
    """The latest occurrence's type, reason and message."""
    count: int
    first: datetime
    last: datetime


_Key = tuple[SourceKey, str]
"""(source, reason): one Event each."""


class EventRecorder:
    """Counts occurrences per (source, reason) and writes them as aggregated Events."""

    def __init__(
        self,
        api: ApiClient,
        *,
        component: str,
        host: str,
        interval: float = 60.0,
        request_timeout: float = 10.0,
    ) -> None:
        self._core = CoreV1Api(api)
        self._component = component
        self._host = host
        self._interval = interval
        # The client waits forever by default: a half-open connection would stall every flush.
        self._request_timeout = request_timeout
        self._pending: dict[_Key, _Occurrences] = {}
        self._written: dict[SourceKey, dict[str, int]] = {}
        """Count already in each source's Event per reason: the next write adds to it."""

    def delivery_failed(
        self, source: SourceKey, uid: str, outcome: Outcome, instant: datetime
    ) -> None:
        # The running total is the Event's `count`; the message tells the latest failure.
        error = outcome.error or "unknown error"
        message = f"event for the tick of {_stamp(instant)} not delivered: {error}"
        self.record(source, uid, Note("Warning", REASON, message), instant)

    def record(self, source: SourceKey, uid: str, note: Note, when: datetime) -> None:
        """One more occurrence of `note` about `source`, written at the next flush."""
        pending = self._pending.get((source, note.reason))
        if pending is None:
            self._pending[(source, note.reason)] = _Occurrences(uid, note, 1, when, when)
        else:
            pending.count += 1
            pending.last, pending.note = when, note

    def forget(self, source: SourceKey) -> None:
        """`source` was deleted: its Events go with it (they live an hour anyway)."""
        self._written.pop(source, None)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        for key, occurrences in pending.items():
            try:
                await self._write(key, occurrences)
            except (ApiException, aiohttp.ClientError, TimeoutError) as error:
                # Never raised: the run loop, and shutdown's last flush, must outlive the apiserver.
                log.warning("could not write the Event for %s: %s", key[0], _why(error))
                self._keep_for_next_flush(key, occurrences)

    def _keep_for_next_flush(self, key: _Key, occurrences: _Occurrences) -> None:
        newer = self._pending.get(key)
        if newer is not None:
            occurrences.count += newer.count
            occurrences.last, occurrences.note = newer.last, newer.note
        self._pending[key] = occurrences

    async def _write(self, key: _Key, occurrences: _Occurrences) -> None:
        source, reason = key
        name = _event_name(source, occurrences.uid, reason)
        written = self._written.setdefault(source, {})
        if reason in written:
            total = written[reason] + occurrences.count
            update = {
                "count": total,
                "message": occurrences.note.message,
                "lastTimestamp": _stamp(occurrences.last),
            }
            try:
                await self._core.patch_namespaced_event(
                    name, source.namespace, update, _request_timeout=self._request_timeout
                )
            except ApiException as error:
                if error.status != 404:  # 404: expired (events live an hour), start anew
                    raise
            else:
                written[reason] = total
                return
        event: Any = self._event(name, source, occurrences)  # the client sends dicts as they are
        await self._core.create_namespaced_event(
            source.namespace, event, _request_timeout=self._request_timeout
        )
        written[reason] = occurrences.count

    def _event(self, name: str, source: SourceKey, occurrences: _Occurrences) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "namespace": source.namespace},
            "involvedObject": {
                "apiVersion": "sources.knative.dev/v1",
                "kind": "PingSource",
                "name": source.name,
                "namespace": source.namespace,
                "uid": occurrences.uid,
            },
            "type": occurrences.note.type,
            "reason": occurrences.note.reason,
            "message": occurrences.note.message,
            "count": occurrences.count,
            "firstTimestamp": _stamp(occurrences.first),
            "lastTimestamp": _stamp(occurrences.last),
            "source": {"component": self._component, "host": self._host},
            "reportingComponent": self._component,
            "reportingInstance": self._host,
        }


def _why(error: Exception) -> str:
    return str(error.reason) if isinstance(error, ApiException) else repr(error)


def _event_name(source: SourceKey, uid: str, reason: str) -> str:
    # 253 is the limit of an object name: leave room for the dot and the 10-digit suffix.
    suffix = hashlib.sha256(f"{uid}/{reason}".encode()).hexdigest()[:10]
    return f"{source.name[:242]}.{suffix}"


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
