"""List-then-watch against a fake apiserver: paging, bookmarks, resumes, relists, retries;
and `list_into`'s prefetching against a scripted page fetcher.

The fake apiserver is scripted per request (see conftest); a `Mirror` consumer keeps the
objects it is told about, as the registry does, so a lost delete would show in its state.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field

import pytest
from kubernetes_asyncio.client import ApiClient

from mtping.kube.errors import ApiUnavailable
from mtping.kube.watching import (
    APPLY_SLICE,
    PINGSOURCES,
    CollectedList,
    Listed,
    RawObject,
    Resource,
    WatchSettings,
    list_into,
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
    """A consumer that keeps what it is told, as the registry does (a list deletes what it did
    not hold once finished), and logs every call in order: ("page", names...), ("finish",),
    (event type, name)."""

    objects: dict[str, RawObject] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    synced: int = 0
    on_page: Callable[[], None] = lambda: None

    def begin_list(self) -> MirrorList:
        return MirrorList(self)

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
        return [call for call in self.calls if call[0] not in ("page", "finish")]


@dataclass
class MirrorList:
    mirror: Mirror
    listed: set[str] = field(default_factory=set)

    def add(self, objects: Iterable[RawObject]) -> None:
        page = {name_of(obj): obj for obj in objects}
        self.mirror.objects.update(page)
        self.listed.update(page)
        names = list(page)
        self.mirror.calls.append(("page", *names))
        self.mirror.on_page()

    def finish(self) -> None:
        for gone in self.mirror.objects.keys() - self.listed:
            del self.mirror.objects[gone]
        self.mirror.calls.append(("finish",))


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


async def test_a_list_follows_continue_tokens_across_pages(
    apiserver: FakeApiserver, api: ApiClient
) -> None:
    items = [source(f"s{i}") for i in range(5)]
    apiserver.lists.append(Listing(items, "42"))
    mirror = Mirror()

    async with watching(api, mirror):
        await eventually(lambda: mirror.synced == 1)

    queries = [seen.query for seen in apiserver.list_requests]
    assert queries == [
        {"limit": "2"},
        {"limit": "2", "continue": "0:2"},
        {"limit": "2", "continue": "0:4"},
    ]
    assert list(mirror.objects.values()) == items


async def test_paged_list_feeds_everything_then_watches_from_the_list_version(
    apiserver: FakeApiserver, api: ApiClient
) -> None:
    apiserver.lists.append(Listing([source(f"s{i}") for i in range(5)], "42"))
    mirror = Mirror()

    async with watching(api, mirror):
        await eventually(lambda: len(apiserver.watch_requests) == 1)

    assert len(apiserver.list_requests) == 3
    assert mirror.calls == [("page", "s0", "s1"), ("page", "s2", "s3"), ("page", "s4"), ("finish",)]
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
        await eventually(lambda: len(mirror.applied) == 3)

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
        ("page", "a", "b"),
        ("finish",),
        ("ADDED", "c"),
        ("page", "a", "d"),
        ("finish",),
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
    assert mirror.calls == [("page", "a"), ("finish",), ("finish",)]
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
    assert mirror.calls == [("page", "a"), ("finish",)]
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
    assert mirror.calls == [("page", "a"), ("finish",)]


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

    assert mirror.calls == [("page", "a"), ("finish",)]
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


async def test_each_page_is_applied_before_the_rest_of_the_list_is_requested(
    apiserver: FakeApiserver, api: ApiClient
) -> None:
    apiserver.lists.append(Listing([source(f"s{i}") for i in range(5)], "42"))
    requests_at_page: list[int] = []
    mirror = Mirror(on_page=lambda: requests_at_page.append(len(apiserver.list_requests)))

    async with watching(api, mirror):
        await eventually(lambda: mirror.synced == 1)

    assert len(apiserver.list_requests) == 3
    assert requests_at_page[0] < 3, "page 1 was held until the whole list had arrived"
    assert mirror.calls[-1] == ("finish",)


async def test_a_list_failing_mid_way_deletes_nothing_and_the_retry_completes(
    apiserver: FakeApiserver, api: ApiClient
) -> None:
    # Listed, then "b" deleted while the watch was broken (410); the relist fails after its
    # first page, the next one completes.
    apiserver.lists.append(Listing([source("a"), source("b")], "10"))
    apiserver.watches.append([expired()])
    relist = [source("a"), source("c"), source("d")]
    apiserver.lists.extend([Listing(relist, "20"), Listing(relist, "30")])
    apiserver.continuations.append(Failing(500))
    objects_at_page: list[list[str]] = []
    mirror = Mirror()
    mirror.on_page = lambda: objects_at_page.append(sorted(mirror.objects))

    async with watching(api, mirror):
        await eventually(lambda: len(apiserver.watch_requests) == 2)

    assert mirror.calls == [
        ("page", "a", "b"),
        ("finish",),
        ("page", "a", "c"),  # then the failure: no finish
        ("page", "a", "c"),
        ("page", "d"),
        ("finish",),
    ]
    assert objects_at_page[2] == ["a", "b", "c"], "the failed list deleted b"
    assert sorted(mirror.objects) == ["a", "c", "d"]
    assert mirror.synced == 2
    assert [seen.query["resourceVersion"] for seen in apiserver.watch_requests] == ["10", "30"]


@dataclass
class ScriptedPages:
    """A page fetcher for `list_into`: page i's continue token is "i+1". It records what was
    requested, raises `failures[i]` for page i, and never answers page `stall_at` (calling
    `on_stall` first)."""

    pages: list[list[str]]
    failures: dict[int, Exception] = field(default_factory=dict)
    stall_at: int | None = None
    requested: list[str | None] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    on_stall: Callable[[], object] = lambda: None

    async def __call__(self, token: str | None) -> RawObject:
        self.requested.append(token)
        index = int(token or 0)
        if index in self.failures:
            raise self.failures[index]
        if index == self.stall_at:
            self.on_stall()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.append(index)
                raise
        metadata = {"resourceVersion": "7"}
        if index + 1 < len(self.pages):
            metadata["continue"] = str(index + 1)
        return {"metadata": metadata, "items": [source(name) for name in self.pages[index]]}


@dataclass
class Recorder:
    """A ListApplier noting each page it gets and the page requests made by then."""

    fetch: ScriptedPages
    seen: list[tuple[list[str], list[str | None]]] = field(default_factory=list)
    fail: bool = False
    added: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, objects: Iterable[RawObject]) -> None:
        self.seen.append(([name_of(obj) for obj in objects], list(self.fetch.requested)))
        self.added.set()
        if self.fail:
            raise RuntimeError("a consumer bug")

    def finish(self) -> None:
        raise AssertionError("list_into leaves finish to its caller")


async def test_the_next_page_is_requested_before_the_current_one_is_applied() -> None:
    fetch = ScriptedPages([["a", "b"], ["c", "d"], ["e"]])
    recorder = Recorder(fetch)

    listed = await list_into(recorder, fetch)

    assert listed == Listed(5, "7")
    assert recorder.seen == [
        (["a", "b"], [None, "1"]),
        (["c", "d"], [None, "1", "2"]),
        (["e"], [None, "1", "2"]),
    ]


async def test_a_big_page_is_applied_in_slices_with_the_loop_turning_between_them() -> None:
    fetch = ScriptedPages([[f"s{i}" for i in range(APPLY_SLICE * 2 + 1)]])
    turns = 0
    slices: list[tuple[int, int]] = []  # (objects, loop turns by then)

    async def turning() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    class Slices:
        def add(self, objects: Iterable[RawObject]) -> None:
            slices.append((len(list(objects)), turns))

        def finish(self) -> None:
            """Not called by list_into."""

    turner = asyncio.create_task(turning())
    try:
        await list_into(Slices(), fetch)
    finally:
        turner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await turner

    assert [size for size, _ in slices] == [APPLY_SLICE, APPLY_SLICE, 1]
    assert slices[0][1] < slices[1][1] < slices[2][1], "the loop did not turn between slices"


async def test_a_failed_next_page_fails_the_list_after_the_pages_before_it() -> None:
    fetch = ScriptedPages([["a"], ["b"], ["c"]], failures={1: ApiUnavailable("reset")})
    recorder = Recorder(fetch)

    with pytest.raises(ApiUnavailable):
        await list_into(recorder, fetch)

    assert [names for names, _ in recorder.seen] == [["a"]]


@pytest.mark.parametrize("when", ["while applying", "while waiting"])
async def test_cancelling_a_list_cancels_the_page_request_in_flight(
    when: str, caplog: pytest.LogCaptureFixture
) -> None:
    fetch = ScriptedPages([["a"], ["b"]], stall_at=1)
    recorder = Recorder(fetch)
    task = asyncio.create_task(list_into(recorder, fetch))
    if when == "while applying":  # page 2's request has just gone out, page 1 is next
        fetch.on_stall = task.cancel
    else:
        await recorder.added.wait()
        task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task

    assert fetch.cancelled == [1]
    gc.collect()
    assert not [record for record in caplog.records if record.name == "asyncio"]


async def test_a_consumer_error_leaves_no_failed_page_request_unretrieved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Page 2's request fails while page 1 is applied, and applying page 1 fails too: the
    # consumer's error is raised, and page 2's is collected rather than logged as lost.
    fetch = ScriptedPages([["a"], ["b"]], failures={1: ApiUnavailable("reset")})
    recorder = Recorder(fetch, fail=True)

    with pytest.raises(RuntimeError, match="a consumer bug"):
        await list_into(recorder, fetch)

    gc.collect()
    assert fetch.requested == [None, "1"]
    assert not [record for record in caplog.records if record.name == "asyncio"]


def test_a_collected_list_replaces_everything_once_finished() -> None:
    replaced: list[list[str]] = []
    collected = CollectedList(lambda objects: replaced.append([name_of(o) for o in objects]))

    collected.add([source("a"), source("b")])
    collected.add([source("c")])
    assert replaced == []
    collected.finish()

    assert replaced == [["a", "b", "c"]]


@pytest.mark.parametrize(
    ("resource", "path"),
    [
        (PINGSOURCES, "/apis/sources.knative.dev/v1/pingsources"),
        (Resource(group="", version="v1", plural="services"), "/api/v1/services"),
    ],
)
def test_a_resource_is_listed_cluster_wide_under_api_or_apis(resource: Resource, path: str) -> None:
    assert resource.path == path
