"""Warning Events on PingSources whose deliveries gave up, aggregated: never one per tick.

Tenants see failures with `kubectl describe pingsource` instead of reading adapter logs.
Failures are counted in memory as they happen (no I/O on the delivery path); a flush loop
writes at most one Event create or patch per failing source per interval, carrying the count
and the last error, as Kubernetes' own event aggregation does. A source that keeps failing has
one Event whose count grows.
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

log = logging.getLogger(__name__)

REASON = "DeliveryFailed"


@dataclass(slots=True)
class _Failures:
    uid: str
    count: int
    first: datetime
    last: datetime
    error: str


class EventRecorder:
    """Counts delivery failures per source and writes them as aggregated Warning Events."""

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
        self._pending: dict[SourceKey, _Failures] = {}
        self._written: dict[SourceKey, int] = {}
        """Count already in the source's Event: the next write adds to it."""

    def delivery_failed(
        self, source: SourceKey, uid: str, outcome: Outcome, instant: datetime
    ) -> None:
        error = outcome.error or "unknown error"
        failures = self._pending.get(source)
        if failures is None:
            self._pending[source] = _Failures(uid, 1, instant, instant, error)
        else:
            failures.count += 1
            failures.last = instant
            failures.error = error

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        for source, failures in pending.items():
            try:
                await self._write(source, failures)
            except (ApiException, aiohttp.ClientError, TimeoutError) as error:
                # Never raised: the run loop, and shutdown's last flush, must outlive the apiserver.
                log.warning("could not write the Event for %s: %s", source, _why(error))
                self._keep_for_next_flush(source, failures)

    def _keep_for_next_flush(self, source: SourceKey, failures: _Failures) -> None:
        newer = self._pending.get(source)
        if newer is not None:
            failures.count += newer.count
            failures.last, failures.error = newer.last, newer.error
        self._pending[source] = failures

    async def _write(self, source: SourceKey, failures: _Failures) -> None:
        name = _event_name(source, failures.uid)
        if source in self._written:
            total = self._written[source] + failures.count
            update = {
                "count": total,
                "message": _message(failures),
                "lastTimestamp": _stamp(failures.last),
            }
            try:
                await self._core.patch_namespaced_event(
                    name, source.namespace, update, _request_timeout=self._request_timeout
                )
            except ApiException as error:
                if error.status != 404:  # 404: expired (events live an hour), start anew
                    raise
            else:
                self._written[source] = total
                return
        event: Any = self._event(name, source, failures)  # the client sends dicts as they are
        await self._core.create_namespaced_event(
            source.namespace, event, _request_timeout=self._request_timeout
        )
        self._written[source] = failures.count

    def _event(self, name: str, source: SourceKey, failures: _Failures) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "namespace": source.namespace},
            "involvedObject": {
                "apiVersion": "sources.knative.dev/v1",
                "kind": "PingSource",
                "name": source.name,
                "namespace": source.namespace,
                "uid": failures.uid,
            },
            "type": "Warning",
            "reason": REASON,
            "message": _message(failures),
            "count": failures.count,
            "firstTimestamp": _stamp(failures.first),
            "lastTimestamp": _stamp(failures.last),
            "source": {"component": self._component, "host": self._host},
            "reportingComponent": self._component,
            "reportingInstance": self._host,
        }


def _why(error: Exception) -> str:
    return str(error.reason) if isinstance(error, ApiException) else repr(error)


def _event_name(source: SourceKey, uid: str) -> str:
    # 253 is the limit of an object name: leave room for the dot and the 10-digit suffix.
    suffix = hashlib.sha256(f"{uid}/{REASON}".encode()).hexdigest()[:10]
    return f"{source.name[:242]}.{suffix}"


def _message(failures: _Failures) -> str:
    # The running total is the Event's `count`; the message tells the latest failure.
    return f"event for the tick of {_stamp(failures.last)} not delivered: {failures.error}"


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
