"""Watching a kind cluster-wide (PingSources; sink kinds): list, then watch from the list's
resourceVersion.

Three levels, as kopf does it:
- `watch_forever` never returns: it relists after any failure, with capped backoff;
- `_watch_continuously` lists (paginated), hands the whole truth to the consumer, then
  watches from the list's resourceVersion, resuming after dropped connections and
  relisting on 410 Gone;
- `_watch_once` is one watch request with bookmarks, a server-side timeout and an
  inactivity timeout, so a silent stream is noticed.

A list reaches the consumer page by page (`Consumer.begin_list`, `ListApplier`), and the
next page is requested before the current one is applied, so the apiserver serves page k+1
while we apply page k. At 100k objects that took the first list + schedule from 27 s to 14-18 s,
and, keeping a page or two of raw dicts alive rather than the whole list, the peak memory
from 7.7 to 2.9 KiB per source (bench/README.md). Only a complete list may delete:
a list that fails half-way has applied real objects, and the retry lists everything again.

Objects stay raw JSON dicts: generated model classes cost too much at 100k objects. This module
decides nothing about what an object means; the consumer does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import orjson
from kubernetes_asyncio.client import ApiClient

from mtping import gcpause, metrics
from mtping.kube.errors import ApiStatusError, ApiUnavailable, KubeError, WatchExpired

log = logging.getLogger(__name__)

RawObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Resource:
    group: str
    """"" for the core group (Services)."""
    version: str
    plural: str

    @property
    def path(self) -> str:
        """The cluster-wide collection: /api/v1/services, /apis/<group>/<version>/<plural>."""
        if not self.group:
            return f"/api/{self.version}/{self.plural}"
        return f"/apis/{self.group}/{self.version}/{self.plural}"


# A watch that ends sooner than this was not a normal server-side timeout.
MIN_WATCH_SECONDS = 1.0

PINGSOURCES = Resource(group="sources.knative.dev", version="v1", plural="pingsources")


# Objects per list page, by measurement (bench/list_pages.py, kube-apiserver 1.34, 2 cores,
# before pages were applied in slices, so with little overlap; bench/README.md). Listing 100k
# PingSources into the registry took 15-22 s in pages of 500, 10-15 s in pages of 1000 or 2000,
# 9-13 s in pages of 5000 (noisy: two runs each on a shared box; at 20k every size took the
# same 1.6-2.3 s). The peak memory grows with the page: 250 MiB for list + registry at 500,
# +5, +10 and +26 MiB at 1000, 2000 and 5000. So 2000: most of the gain for little memory.
# Not resourceVersion="0" (served from the watch cache): it ignores `limit` and sends the whole
# list in one body, +710 MiB at 100k, and was not faster (12.5 s).
DEFAULT_PAGE_SIZE = 2000


@dataclass(frozen=True, slots=True)
class WatchSettings:
    page_size: int = DEFAULT_PAGE_SIZE
    # The apiserver closes a watch after timeoutSeconds; a little jitter spreads reconnects.
    server_timeout: int = 300
    # Bookmarks arrive about once a minute, so a stream silent for this long is dead.
    inactivity_timeout: float = 150.0
    # A list page slower than this is abandoned and the list retried.
    list_timeout: float = 60.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0


class ListApplier(Protocol):
    """One list on its way to a consumer: `add` for each page, then `finish` once, and only if
    the list completed. An unfinished applier is dropped: nothing it did may be undone."""

    def add(self, objects: Iterable[RawObject]) -> None:
        """These objects exist: part of a page; the calls follow the list's order."""

    def finish(self) -> None:
        """The list is complete: whatever it did not contain is gone."""


class Consumer(Protocol):
    """What the watch feeds: each list, page by page, then each change."""

    def begin_list(self) -> ListApplier: ...

    def apply(self, event_type: str, obj: RawObject) -> None: ...


@dataclass(slots=True)
class CollectedList:
    """A `ListApplier` for a consumer that takes a whole list at once (`replace_all`): it
    keeps the pages and hands them over on `finish`. For small kinds (sinks); PingSources are
    applied page by page instead, to keep only a page of raw objects alive at 100k."""

    replace_all: Callable[[list[RawObject]], None]
    objects: list[RawObject] = field(default_factory=list)

    def add(self, objects: Iterable[RawObject]) -> None:
        self.objects.extend(objects)

    def finish(self) -> None:
        self.replace_all(self.objects)


@dataclass(slots=True)
class _Cursor:
    """The newest resourceVersion seen; it outlives a broken stream, so the watch resumes there."""

    version: str


class Backoff:
    """Capped exponential backoff with full jitter; `reset` after a success."""

    def __init__(self, initial: float, cap: float) -> None:
        self._initial = initial
        self._cap = cap
        self._failures = 0

    def reset(self) -> None:
        self._failures = 0

    def next_delay(self) -> float:
        ceiling = min(self._cap, self._initial * 2**self._failures)
        self._failures += 1
        return random.uniform(ceiling / 2, ceiling)


async def watch_forever(
    api: ApiClient,
    consumer: Consumer,
    *,
    resource: Resource = PINGSOURCES,
    settings: WatchSettings = WatchSettings(),
    on_synced: Callable[[], None] = lambda: None,
    on_error: Callable[[KubeError], None] = lambda error: None,
) -> None:
    """List and watch `resource` until cancelled; `on_synced` runs after each applied list,
    `on_error` after each failed one (403 Forbidden, say), before the retry."""
    backoff = Backoff(settings.backoff_initial, settings.backoff_max)
    reason = "initial"
    while True:
        try:
            await _watch_continuously(
                api,
                consumer,
                resource=resource,
                settings=settings,
                reason=reason,
                on_synced=on_synced,
                backoff=backoff,
            )
        except KubeError as error:
            on_error(error)
            delay = backoff.next_delay()
            log.warning("listing %s failed, retrying in %.1fs: %s", resource.plural, delay, error)
            reason = "error"
            await asyncio.sleep(delay)


async def _watch_continuously(
    api: ApiClient,
    consumer: Consumer,
    *,
    resource: Resource,
    settings: WatchSettings,
    reason: str,
    on_synced: Callable[[], None],
    backoff: Backoff,
) -> None:
    fetch = _page_fetcher(api, resource, settings)
    while True:
        metrics.RELISTS.labels(reason=reason).inc()
        with gcpause.paused():  # a list makes no cycles; see gcpause
            applier = consumer.begin_list()
            listed = await list_into(applier, fetch)
            applier.finish()
        on_synced()
        backoff.reset()
        log.info(
            "listed %d %s at resourceVersion %s", listed.count, resource.plural, listed.version
        )
        try:
            await _watch_from(
                api,
                consumer,
                resource=resource,
                settings=settings,
                version=listed.version,
                backoff=backoff,
            )
        except WatchExpired:
            metrics.WATCH_RESTARTS.labels(reason="gone").inc()
            reason = "gone"


async def _watch_from(
    api: ApiClient,
    consumer: Consumer,
    *,
    resource: Resource,
    settings: WatchSettings,
    version: str,
    backoff: Backoff,
) -> None:
    """Watch from `version` forever, resuming after broken streams; raises WatchExpired."""
    cursor = _Cursor(version)
    while True:
        began = time.monotonic()
        try:
            await _watch_once(api, consumer, resource=resource, settings=settings, cursor=cursor)
            metrics.WATCH_RESTARTS.labels(reason="timeout").inc()
            # A server that ends every watch at once must not make us spin.
            if time.monotonic() - began < MIN_WATCH_SECONDS:
                await asyncio.sleep(backoff.next_delay())
            else:
                backoff.reset()
        except (ApiUnavailable, ApiStatusError) as error:
            metrics.WATCH_RESTARTS.labels(reason="error").inc()
            delay = backoff.next_delay()
            log.warning("watch broke, resuming from %s in %.1fs: %s", cursor.version, delay, error)
            await asyncio.sleep(delay)


@dataclass(frozen=True, slots=True)
class Listed:
    count: int
    version: str
    """The resourceVersion the list is a snapshot of: the watch starts there."""


APPLY_SLICE = 100
"""Objects applied between two turns of the event loop (~10 ms of parsing). A request is not
on the wire after one turn: kubernetes_asyncio's session trusts the environment, so aiohttp
looks up netrc and proxy settings in worker threads first. Turns while a page is applied let
the next page's request go out, and keep the scheduler's ticks on time during a relist."""

PageFetch = Callable[[str | None], Coroutine[Any, Any, RawObject]]
"""Fetches one decoded list page: the first for None, else the one a continue token names."""


async def list_into(applier: ListApplier, fetch: PageFetch) -> Listed:
    """Every page of a list into `applier`, in order; the next page is requested before the
    current one is applied, so the apiserver's work overlaps ours. `finish` is the caller's."""
    pending = asyncio.create_task(fetch(None))
    count = 0
    try:
        while True:
            page = await pending
            metadata = page.get("metadata") or {}
            items: list[RawObject] = page.get("items") or []
            del page  # the page's envelope; its items go once applied
            token = metadata.get("continue")
            if token:
                pending = asyncio.create_task(fetch(str(token)))
            await _apply_in_slices(applier, items)
            count += len(items)
            del items
            if not token:
                return Listed(count, str(metadata.get("resourceVersion", "")))
    finally:
        await _discard(pending)


async def _apply_in_slices(applier: ListApplier, items: list[RawObject]) -> None:
    for first in range(0, len(items), APPLY_SLICE):
        await asyncio.sleep(0)  # the next page's request, and the ticks, move on
        applier.add(items[first : first + APPLY_SLICE])


async def _discard(task: asyncio.Task[RawObject]) -> None:
    """Cancel a page request nobody will read, and collect its outcome, so that no
    "exception was never retrieved" is logged for it."""
    if not task.done():
        task.cancel()
        await asyncio.wait([task])
    if not task.cancelled():
        task.exception()


def _page_fetcher(api: ApiClient, resource: Resource, settings: WatchSettings) -> PageFetch:
    async def fetch(token: str | None) -> RawObject:
        return await _request_json(
            api,
            resource,
            limit=settings.page_size,
            _continue=token,
            _request_timeout=settings.list_timeout,
        )

    return fetch


async def _watch_once(
    api: ApiClient,
    consumer: Consumer,
    *,
    resource: Resource,
    settings: WatchSettings,
    cursor: _Cursor,
) -> None:
    """One watch request from `cursor`, advancing it with every event, until the server ends it."""
    server_timeout = int(settings.server_timeout * random.uniform(1.0, 1.2))
    stream = _stream_events(api, resource, settings, cursor.version, server_timeout)
    # aclosing: on an ERROR event the response is released now, not when the generator is
    # garbage collected.
    async with contextlib.aclosing(stream) as events:
        async for event in events:
            kind = event.get("type")
            obj = event.get("object") or {}
            if kind == "ERROR":
                _raise_watch_error(obj)
            cursor.version = (obj.get("metadata") or {}).get("resourceVersion") or cursor.version
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                consumer.apply(kind, obj)


async def _stream_events(
    api: ApiClient, resource: Resource, settings: WatchSettings, version: str, server_timeout: int
) -> AsyncGenerator[Mapping[str, Any], None]:
    client_timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=10, sock_read=settings.inactivity_timeout
    )
    response = await _request(
        api,
        resource,
        watch=True,
        allow_watch_bookmarks=True,
        resource_version=version,
        timeout_seconds=server_timeout,
        _request_timeout=client_timeout,
    )
    try:
        await _raise_for_status(response)
        while True:
            try:
                line = await response.content.readline()
            except (aiohttp.ClientError, TimeoutError) as error:
                raise ApiUnavailable(f"watch stream broke: {error!r}") from error
            if not line:
                return
            yield _decode(line)
    finally:
        response.release()


def _decode(line: bytes) -> Mapping[str, Any]:
    try:
        event: Mapping[str, Any] = orjson.loads(line)
    except ValueError as error:
        # A line cut short by a proxy that ended the response cleanly: resume before it.
        raise ApiUnavailable(f"watch stream sent a malformed event: {error}") from error
    return event


def _raise_watch_error(status: Mapping[str, Any]) -> None:
    code = int(status.get("code") or 0)
    message = str(status.get("message") or status)
    if code == 410:
        raise WatchExpired(message)
    raise ApiStatusError(code, message)


async def _request_json(api: ApiClient, resource: Resource, **params: Any) -> RawObject:
    response = await _request(api, resource, **params)
    try:
        await _raise_for_status(response)
        body: RawObject = orjson.loads(await response.read())
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        raise ApiUnavailable(f"reading list response failed: {error!r}") from error
    finally:
        response.release()
    return body


# Keyword arguments of the generated list methods -> query parameters of the apiserver.
_QUERY_NAMES = {
    "allow_watch_bookmarks": "allowWatchBookmarks",
    "_continue": "continue",
    "limit": "limit",
    "resource_version": "resourceVersion",
    "timeout_seconds": "timeoutSeconds",
    "watch": "watch",
}


async def _request(
    api: ApiClient, resource: Resource, *, _request_timeout: Any = None, **params: Any
) -> aiohttp.ClientResponse:
    # call_api rather than CustomObjectsApi: the core group (Services) lives under /api.
    query = [(_QUERY_NAMES[name], value) for name, value in params.items() if value is not None]
    try:
        response: aiohttp.ClientResponse = await api.call_api(
            resource.path,
            "GET",
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=_request_timeout,
        )
    except (aiohttp.ClientError, TimeoutError, OSError) as error:
        raise ApiUnavailable(f"apiserver unreachable: {error!r}") from error
    return response


async def _raise_for_status(response: aiohttp.ClientResponse) -> None:
    if response.status < 300:
        return
    try:
        text = await response.text()
    except (aiohttp.ClientError, TimeoutError) as error:
        raise ApiUnavailable(f"reading a {response.status} response failed: {error!r}") from error
    try:
        message = json.loads(text).get("message", text)
    except ValueError:
        message = text
    if response.status == 410:
        raise WatchExpired(message)
    raise ApiStatusError(response.status, message)
