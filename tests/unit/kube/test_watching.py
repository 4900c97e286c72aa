"""List-then-watch against a fake apiserver: paging, bookmarks, resumes, relists, retries.

The fake apiserver is scripted per request (see conftest); a `Mirror` consumer keeps the
objects it is told about, as the registry does, so a lost delete would show in its state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from kubernetes_asyncio.client import ApiClient

from mtping.kube.watching import (
    PINGSOURCES,
    RawObject,
    Resource,
    WatchSettings,
    list_all,
    watch_forever,
)
from tests.unit.kube.conftest import (
    Abort,
    End,
    Failing,
    FakeApiserver,
    Listing,
    Pause,
    Raw,
    Stalling,
    WatchStep,
    client_for,
    eventually,
    free_port,
    sample,
)

FAST = WatchSettings(
    page_size=2,
    server_timeout=30,
    inactivity_timeout=5.0,
    backoff_initial=0.01,
    backoff_max=0.02,
)
RELISTS = "mtping_watch_relists_total"
RESTARTS = "mtping_watch_restarts_total"


def source(name: str, version: str = "1") -> RawObject:
    return {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "PingSource",
        "metadata": {"namespace": "ns", "name": name, "resourceVersion": version},
        "spec": {"schedule": "* * * * *"},
    }


def event(kind: str, name: str, version: str) -> RawObject:
    return {"type": kind, "object": source(name, version)}


def bookmark(version: str) -> RawObject:
    return {
        "type": "BOOKMARK",
        "object": {"kind": "PingSource", "metadata": {"resourceVersion": version}},
    }


def expired() -> RawObject:
    status = {"kind": "Status", "status": "Failure", "reason": "Expired", "code": 410}
    return {"type": "ERROR", "object": {**status, "message": "too old resource version"}}


def name_of(obj: RawObject) -> str:
    return str(obj["metadata"]["name"])


@dataclass
class Mirror:
    """A consumer that keeps what it is told and logs every call, in order."""

    objects: dict[str, RawObject] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    synced: int = 0

    def replace_all(self, objects: list[RawObject]) -> None:
        self.objects = {name_of(obj): obj for obj in objects}
        self.calls.append(("replace_all", *(name_of(obj) for obj in objects)))

    def apply(self, event_type: str, obj: RawObject) -> None:
        if event_type == "DELETED":
            self.objects.pop(name_of(obj), None)
        else:
            self.objects[name_of(obj)] = obj
        self.calls.append((event_type, name_of(obj)))

    def on_synced(self) -> None:
        self.synced += 1

    @property
    def applied(self) -> list[tuple[str, ...]]:
        return [call for call in self.calls if call[0] != "replace_all"]


@contextlib.asynccontextmanager
async def watching(
    api: ApiClient, mirror: Mirror, settings: WatchSettings = FAST
) -> AsyncIterator[asyncio.Task[None]]:
    """`watch_forever` in the background; on exit it must still run, and cancel cleanly."""
    task = asyncio.create_task(
        watch_forever(api, mirror, settings=settings, on_synced=mirror.on_synced)
    )
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # re-raises whatever made it crash, failing the test
    assert task.cancelled(), "watch_forever returned instead of running until cancelled"


async def test_list_all_follows_continue_tokens_across_pages(
    apiserver: FakeApiserver, api: ApiClient
) -> None:
    items = [source(f"s{i}") for i in range(5)]
    apiserver.lists.append(Listing(items, "42"))

    objects, version = await list_all(api, PINGSOURCES, page_size=2)

    assert (objects, version) == (items, "42")
    queries = [seen.query for seen in apiserver.list_requests]
    assert queries == [
        {"limit": "2"},
        {"limit": "2", "continue": "0:2"},
        {"limit": "2", "continue": "0:4"},
    ]


async def test_paged_list_feeds_everything_then_watches_from_the_list_version(
    apiserver: FakeApiserver, api: ApiClient
) -> None:
    apiserver.lists.append(Listing([source(f"s{i}") for i in range(5)], "42"))
    mirror = Mirror()

    async with watching(api, mirror):
        await eventually(lambda: len(apiserver.watch_requests) == 1)

    assert len(apiserver.list_requests) == 3
    assert mirror.calls == [("replace_all", "s0", "s1", "s2", "s3", "s4")]
    assert mirror.synced == 1
    query = apiserver.watch_requests[0].query
    assert query["resourceVersion"] == "42"
    assert query["watch"].lower() == query["allowWatchBookmarks"].lower() == "true"
    # The server-side timeout carries up to 20% jitter so that reconnects spread out.
    assert 30 <= int(query["timeoutSeconds"]) <= 36


async def test_changes_reach_the_consumer_in_order(
    apiserver: FakeApiserver, api: ApiClient
) -> None:
    apiserver.lists.append(Listing([source("a")], "10"))
    apiserver.watches.append(
        [event("ADDED", "b", "11"), event("MODIFIED", "b", "12"), event("DELETED", "a", "13")]
    )
    mirror = Mirror()

    async with watching(api, mirror):
        await eventually(lambda: len(mirror.calls) == 4)

    assert mirror.applied == [("ADDED", "b"), ("MODIFIED", "b"), ("DELETED", "a")]
    assert list(mirror.objects) == ["b"]
    assert mirror.objects["b"]["metadata"]["resourceVersion"] == "12"


async def test_bookmarks_advance_the_version_and_never_reach_the_consumer(
    apiserver: FakeApiserver, api: ApiClient
) -> None:
    apiserver.lists.append(Listing([source("a")], "10"))
    apiserver.watches.append([event("ADDED", "b", "11"), bookmark("15"), End()])
    timeouts = sample(RESTARTS, reason="timeout")
    mirror = Mirror()

    async with watching(api, mirror):
        await eventually(lambda: len(apiserver.watch_requests) == 2)

    versions = [seen.query["resourceVersion"] for seen in apiserver.watch_requests]
    assert versions == ["10", "15"]
    assert mirror.applied == [("ADDED", "b")]
    assert len(apiserver.first_page_requests) == 1, "a watch that timed out needs no relist"
    assert sample(RESTARTS, reason="timeout") == timeouts + 1


async def test_watch_error_410_relists_and_the_consumer_sees_deletes_it_missed(
    apiserver: FakeApiserver, api: ApiClient
) -> None:
    # While the watch was broken, "b" and "c" were deleted and "d" created; the relist says so.
    apiserver.lists.extend(
        [Listing([source("a"), source("b")], "10"), Listing([source("a"), source("d")], "20")]
    )
    apiserver.watches.append([event("ADDED", "c", "11"), expired()])
    gone = sample(RELISTS, reason="gone"), sample(RESTARTS, reason="gone")
    mirror = Mirror()

    async with watching(api, mirror):
        await eventually(lambda: len(apiserver.watch_requests) == 2)

    assert mirror.calls == [
        ("replace_all", "a", "b"),
        ("ADDED", "c"),
        ("replace_all", "a", "d"),
    ]
    assert sorted(mirror.objects) == ["a", "d"]
    assert mirror.synced == 2
    assert [seen.query["resourceVersion"] for seen in apiserver.watch_requests] == ["10", "20"]
    assert (sample(RELISTS, reason="gone"), sample(RESTARTS, reason="gone")) == (
        gone[0] + 1,
        gone[1] + 1,
    )


async def test_http_410_on_the_watch_request_relists(
    apiserver: FakeApiserver, api: ApiClient
) -> None:
    apiserver.lists.extend([Listing([source("a")], "10"), Listing([], "20")])
    apiserver.watches.append(Failing(410, "Expired"))
    mirror = Mirror()

    async with watching(api, mirror):
        await eventually(lambda: len(apiserver.watch_requests) == 2)

    assert len(apiserver.first_page_requests) == 2
    assert mirror.calls == [("replace_all", "a"), ("replace_all",)]
    assert mirror.objects == {}
    assert apiserver.watch_requests[1].query["resourceVersion"] == "20"


async def test_other_watch_errors_resume_from_the_last_version_without_a_relist(
    apiserver: FakeApiserver, api: ApiClient
) -> None:
    apiserver.lists.append(Listing([], "10"))
    internal = {"type": "ERROR", "object": {"kind": "Status", "code": 500, "message": "boom"}}
    apiserver.watches.extend([[event("ADDED", "a", "11"), internal], Failing(503)])
    errors = sample(RESTARTS, reason="error")
    mirror = Mirror()

    async with watching(api, mirror):
        await eventually(lambda: len(apiserver.watch_requests) == 3)

    assert [seen.query["resourceVersion"] for seen in apiserver.watch_requests] == [
        "10",
        "11",
        "11",
    ]
    assert len(apiserver.first_page_requests) == 1
    assert sample(RESTARTS, reason="error") == errors + 2


async def test_a_dropped_connection_resumes_from_the_last_version_without_a_relist(
    apiserver: FakeApiserver, api: ApiClient
) -> None:
    apiserver.lists.append(Listing([source("a")], "10"))
    apiserver.watches.append([event("ADDED", "b", "11"), event("MODIFIED", "a", "12"), Abort()])
    apiserver.watches.append([event("DELETED", "b", "13")])
    errors = sample(RESTARTS, reason="error")
    mirror = Mirror()

    async with watching(api, mirror):
        await eventually(lambda: len(mirror.applied) == 3)

    assert [seen.query["resourceVersion"] for seen in apiserver.watch_requests] == ["10", "12"]
    assert len(apiserver.first_page_requests) == 1
    assert mirror.applied == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    assert sample(RESTARTS, reason="error") == errors + 1


async def test_objects_bigger_than_aiohttp_line_limit_come_through_whole(
    apiserver: FakeApiserver, api: ApiClient
) -> None:
    big = source("big", "11")
    # aiohttp's default read buffer stops a line at 128 KiB; etcd lets an object reach 1.5 MiB.
    big["spec"]["data"] = "x" * 1_000_000
    apiserver.lists.append(Listing([], "10"))
    apiserver.watches.append([{"type": "ADDED", "object": big}, event("ADDED", "small", "12")])
    mirror = Mirror()

    async with watching(api, mirror):
        await eventually(lambda: len(mirror.applied) == 2)

    assert mirror.objects["big"] == big
    assert len(apiserver.watch_requests) == 1


async def test_a_connection_dropped_mid_line_resumes_and_loses_only_that_line(
    apiserver: FakeApiserver, api: ApiClient
) -> None:
    apiserver.lists.append(Listing([], "10"))
    apiserver.watches.append([event("ADDED", "a", "11"), Raw(b'{"type": "ADDED", "obj'), Abort()])
    mirror = Mirror()

    async with watching(api, mirror):
        await eventually(lambda: len(apiserver.watch_requests) == 2)

    assert apiserver.watch_requests[1].query["resourceVersion"] == "11"
    assert mirror.applied == [("ADDED", "a")]


async def test_a_stream_that_ends_mid_line_resumes_instead_of_crashing(
    apiserver: FakeApiserver, api: ApiClient
) -> None:
    # A proxy that cuts a response short but ends it cleanly leaves a partial last line.
    apiserver.lists.append(Listing([], "10"))
    apiserver.watches.append([event("ADDED", "a", "11"), Raw(b'{"type": "ADDED", "obj'), End()])
    mirror = Mirror()

    async with watching(api, mirror):
        await eventually(lambda: len(apiserver.watch_requests) == 2)

    assert apiserver.watch_requests[1].query["resourceVersion"] == "11"
    assert len(apiserver.first_page_requests) == 1
    assert mirror.applied == [("ADDED", "a")]


async def test_a_silent_stream_is_abandoned_after_the_inactivity_timeout(
    apiserver: FakeApiserver, api: ApiClient
) -> None:
    apiserver.lists.append(Listing([], "10"))
    apiserver.watches.append([event("ADDED", "a", "11")])  # then silence
    apiserver.watches.append([event("ADDED", "b", "12")])
    settings = WatchSettings(
        page_size=2, server_timeout=30, inactivity_timeout=0.2, backoff_initial=0.01
    )
    mirror = Mirror()

    async with watching(api, mirror, settings):
        await eventually(lambda: len(mirror.applied) == 2)

    assert [seen.query["resourceVersion"] for seen in apiserver.watch_requests][:2] == ["10", "11"]
    assert len(apiserver.first_page_requests) == 1
    assert mirror.applied == [("ADDED", "a"), ("ADDED", "b")]


async def test_a_slow_stream_within_the_inactivity_timeout_is_kept(
    apiserver: FakeApiserver, api: ApiClient
) -> None:
    apiserver.lists.append(Listing([], "10"))
    steps: list[WatchStep] = [
        event("ADDED", "a", "11"),
        Pause(0.15),
        event("ADDED", "b", "12"),
        Pause(0.15),
    ]
    apiserver.watches.append([*steps, event("ADDED", "c", "13")])
    settings = WatchSettings(page_size=2, inactivity_timeout=0.3, backoff_initial=0.01)
    mirror = Mirror()

    async with watching(api, mirror, settings):
        await eventually(lambda: len(mirror.applied) == 3)

    assert len(apiserver.watch_requests) == 1


async def test_list_failures_are_retried_with_backoff_until_a_list_works(
    apiserver: FakeApiserver, api: ApiClient
) -> None:
    apiserver.lists.extend([Failing(500), Failing(500), Listing([source("a")], "10")])
    before = sample(RELISTS, reason="initial"), sample(RELISTS, reason="error")
    mirror = Mirror()

    async with watching(api, mirror):
        await eventually(lambda: len(apiserver.watch_requests) == 1)

    assert len(apiserver.first_page_requests) == 3
    assert mirror.calls == [("replace_all", "a")]
    assert mirror.synced == 1
    after = sample(RELISTS, reason="initial"), sample(RELISTS, reason="error")
    assert after == (before[0] + 1, before[1] + 2)


async def test_a_stalled_list_is_given_up_and_retried(
    apiserver: FakeApiserver, api: ApiClient
) -> None:
    apiserver.lists.extend([Stalling(), Listing([source("a")], "10")])
    settings = WatchSettings(page_size=2, list_timeout=0.2, backoff_initial=0.01)
    mirror = Mirror()

    async with watching(api, mirror, settings):
        await eventually(lambda: len(apiserver.watch_requests) == 1)

    assert len(apiserver.first_page_requests) == 2
    assert mirror.calls == [("replace_all", "a")]


async def test_an_unreachable_apiserver_is_retried_until_it_comes_up() -> None:
    fake = FakeApiserver(lists=deque([Listing([source("a")], "10")]))
    port = free_port()
    errors = sample(RELISTS, reason="error")
    mirror = Mirror()

    async with client_for(f"http://127.0.0.1:{port}") as api, watching(api, mirror):
        await eventually(lambda: sample(RELISTS, reason="error") >= errors + 2)
        assert mirror.calls == []
        runner = await fake.start(port)
        try:
            await eventually(lambda: len(fake.watch_requests) == 1)
        finally:
            await runner.cleanup()

    assert mirror.calls == [("replace_all", "a")]
    assert mirror.synced == 1


async def test_forbidden_lists_are_logged_and_retried_forever(
    apiserver: FakeApiserver, api: ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    apiserver.default_list = Failing(403, "Forbidden")
    mirror = Mirror()

    with caplog.at_level(logging.WARNING, logger="mtping.kube.watching"):
        async with watching(api, mirror):
            await eventually(lambda: len(apiserver.list_requests) >= 3)

    assert mirror.calls == []
    assert mirror.synced == 0
    assert any("403" in record.getMessage() for record in caplog.records)


async def test_watch_forever_cancels_cleanly_mid_stream(
    apiserver: FakeApiserver, api: ApiClient
) -> None:
    apiserver.lists.append(Listing([], "10"))
    apiserver.watches.append([event("ADDED", "a", "11")])  # then the stream stays open
    mirror = Mirror()

    async with watching(api, mirror) as task:
        await eventually(lambda: len(mirror.applied) == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    assert task.cancelled()


async def test_each_failed_list_is_reported_to_on_error_before_the_retry(
    apiserver: FakeApiserver, api: ApiClient
) -> None:
    apiserver.lists.extend([Failing(403, "Forbidden"), Failing(500)])
    apiserver.lists.append(Listing([source("a")], "5"))
    mirror = Mirror()
    errors: list[int] = []

    def on_error(error: Exception) -> None:
        errors.append(getattr(error, "status", 0))

    task = asyncio.create_task(
        watch_forever(api, mirror, settings=FAST, on_synced=mirror.on_synced, on_error=on_error)
    )
    try:
        await eventually(lambda: mirror.synced == 1)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    assert errors == [403, 500]


@pytest.mark.parametrize(
    ("resource", "path"),
    [
        (PINGSOURCES, "/apis/sources.knative.dev/v1/pingsources"),
        (Resource(group="", version="v1", plural="services"), "/api/v1/services"),
    ],
)
def test_a_resource_is_listed_cluster_wide_under_api_or_apis(resource: Resource, path: str) -> None:
    assert resource.path == path
