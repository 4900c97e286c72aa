"""The benchmark's PingSources: what they are, and creating them fast through the apiserver.

Source `i` of a workload of N is the same in every run, so a workload grows by creating only
the sources it lacks: most fire every minute (`* * * * *`), one in 20 has a time zone, one in
20 a seconds schedule (`*/30 * * * * *`), so all fire at the top of the minute and some at :30.
Sources are made Ready with a `status.sinkUri` the way Knative's controller would, so both
adapters fire them. It must never create anything but PingSources and their status.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from tests.harness.rest import Credentials, RestClient

GROUP_VERSION = "sources.knative.dev/v1"
NAMESPACES = 10
ZONES = (
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Adelaide",
)
PROBE_PREFIX = "p"
MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True, slots=True)
class SourceClass:
    """A kind of source in the workload: its name prefix, schedule and firing period."""

    prefix: str
    schedule: str
    period_s: int
    """Seconds between ticks; every tick lies on a multiple of it (UTC epoch)."""


MINUTELY = SourceClass("m", "* * * * *", 60)
ZONED = SourceClass("z", "* * * * *", 60)
SECONDS = SourceClass("s", "*/30 * * * * *", 30)
PROBE = SourceClass(PROBE_PREFIX, "* * * * * *", 1)
CLASSES = {c.prefix: c for c in (MINUTELY, ZONED, SECONDS, PROBE)}


def class_of(index: int) -> SourceClass:
    """The class of workload source `index` (5% seconds schedules, 5% with a zone)."""
    slot = index % 20
    if slot == 0:
        return SECONDS
    return ZONED if slot == 1 else MINUTELY


def namespace_of(index: int) -> str:
    return f"bench-{index % NAMESPACES}"


def name_of(index: int) -> str:
    return f"{class_of(index).prefix}-{index:06d}"


def namespaces() -> list[str]:
    return [f"bench-{i}" for i in range(NAMESPACES)]


def period_of_name(name: str) -> int:
    """The firing period of a source from its name (KeyError for names not made here)."""
    return CLASSES[name.split("-", 1)[0]].period_s


def ticks_per_minute(n_sources: int) -> int:
    """Ticks the first `n_sources` workload sources owe in each whole minute."""
    return sum(60 // class_of(i).period_s for i in range(n_sources))


def pingsource(
    *, namespace: str, name: str, source_class: SourceClass, sink: str, zone: str | None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "schedule": source_class.schedule,
        "contentType": "application/json",
        "data": f'{{"source": "{name}"}}',
        "sink": {"uri": sink},
    }
    if zone is not None:
        spec["timezone"] = zone
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "PingSource",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def workload_source(index: int, sinks: Sequence[str]) -> dict[str, Any]:
    source_class = class_of(index)
    zone = ZONES[index % len(ZONES)] if source_class is ZONED else None
    return pingsource(
        namespace=namespace_of(index),
        name=name_of(index),
        source_class=source_class,
        sink=sinks[index % len(sinks)],
        zone=zone,
    )


def collection_path(namespace: str) -> str:
    return f"/apis/{GROUP_VERSION}/namespaces/{namespace}/pingsources"


def ready_status(sink: str) -> dict[str, Any]:
    """The status Knative's controller writes once the sink resolved."""
    return {
        "status": {
            "sinkUri": sink,
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ],
        }
    }


# -- bulk creation ---------------------------------------------------------------------------


class CreationError(RuntimeError):
    """The apiserver refused to create a benchmark source."""


def create_ready(
    credentials: Credentials, objects: Sequence[dict[str, Any]], *, concurrency: int = 48
) -> float:
    """Create `objects` and mark each Ready (existing ones are only marked); the seconds it took."""
    began = time.monotonic()
    asyncio.run(_create_all(credentials, objects, concurrency))
    return time.monotonic() - began


async def _create_all(
    credentials: Credentials, objects: Sequence[dict[str, Any]], concurrency: int
) -> None:
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=_tls(credentials))
    pending = iter(objects)
    progress = _Progress(len(objects))
    async with aiohttp.ClientSession(credentials.server, connector=connector) as session:
        workers = [_creator(session, pending, progress) for _ in range(concurrency)]
        await asyncio.gather(*workers)


async def _creator(
    session: aiohttp.ClientSession, pending: Iterator[dict[str, Any]], progress: _Progress
) -> None:
    for obj in pending:
        await _create_one(session, obj)
        progress.step()


async def _create_one(session: aiohttp.ClientSession, obj: dict[str, Any]) -> None:
    meta = obj["metadata"]
    collection = collection_path(meta["namespace"])
    async with session.post(collection, json=obj) as answer:
        if answer.status not in (201, 409):  # 409: left by an earlier, smaller workload
            raise CreationError(f"POST {meta['name']}: {answer.status} {await answer.text()}")
    status = ready_status(obj["spec"]["sink"]["uri"])
    path = f"{collection}/{meta['name']}/status"
    headers = {"Content-Type": MERGE_PATCH}
    async with session.patch(path, json=status, headers=headers) as answer:
        if answer.status != 200:
            raise CreationError(f"PATCH {path}: {answer.status} {await answer.text()}")


def _tls(credentials: Credentials) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(credentials.ca_file))
    if credentials.cert_file is not None:
        context.load_cert_chain(str(credentials.cert_file), str(credentials.key_file))
    return context


class _Progress:
    """Prints a line at every tenth of the work, so a long creation shows it is alive."""

    def __init__(self, total: int) -> None:
        self._total = total
        self._done = 0
        self._began = time.monotonic()

    def step(self) -> None:
        self._done += 1
        if self._total >= 1000 and self._done % max(1, self._total // 10) == 0:
            rate = self._done / max(time.monotonic() - self._began, 1e-9)
            print(f"  created {self._done}/{self._total} ({rate:.0f}/s)", flush=True)


# -- probes: sources created while an adapter runs -------------------------------------------


@dataclass(frozen=True, slots=True)
class Probe:
    namespace: str
    name: str
    created_at: float
    """Wall-clock time the create request was sent (epoch seconds, as nginx logs)."""
    ready_at: float
    """Wall-clock time the status write (Ready) was answered: from then on it may fire."""


def create_probe(rest: RestClient, *, tag: str, index: int, sink: str) -> Probe:
    """Create and mark Ready one every-second source; when its create request was sent."""
    name = f"{PROBE_PREFIX}-{tag}-{index}"
    namespace = namespace_of(index)
    obj = pingsource(namespace=namespace, name=name, source_class=PROBE, sink=sink, zone=None)
    created_at = time.time()
    rest.request("POST", collection_path(namespace), body=obj)
    path = f"{collection_path(namespace)}/{name}/status"
    rest.request("PATCH", path, body=ready_status(sink), content_type=MERGE_PATCH)
    return Probe(namespace=namespace, name=name, created_at=created_at, ready_at=time.time())


def delete_probe(rest: RestClient, probe: Probe) -> None:
    rest.request("DELETE", f"{collection_path(probe.namespace)}/{probe.name}")
