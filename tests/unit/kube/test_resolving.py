"""The cluster resolver's indexes: watched sinks in, exactly the dependent sources out.

The watch itself is `watch_forever` (tested in test_watching.py); here each kind's index is fed
lists and events directly, as the watch would, and the resolver's answers and notifications are
checked. No request is made: the client points nowhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kubernetes_asyncio.client import ApiClient

from mtping.delivery import Target
from mtping.kube.errors import ApiStatusError, ApiUnavailable
from mtping.kube.resolving import SERVICE, ClusterResolver, Kind
from mtping.model import PingSourceSpec, SourceKey, parse_source
from mtping.resolving import Unresolved
from tests.unit.kube.conftest import client_for

SINK_KIND = Kind("example.com", "v1", "Sink")
A, B = SourceKey("team", "a"), SourceKey("team", "b")


def spec(name: str, sink: dict[str, Any]) -> PingSourceSpec:
    return parse_source(
        {
            "metadata": {"namespace": "team", "name": name, "uid": f"uid-{name}"},
            "spec": {"schedule": "* * * * *", "sink": sink},
        }
    )


def to_service(name: str, uri: str | None = None) -> dict[str, Any]:
    return {"ref": {"apiVersion": "v1", "kind": "Service", "name": name}, "uri": uri}


def to_sink(name: str) -> dict[str, Any]:
    return {"ref": {"apiVersion": "example.com/v1", "kind": "Sink", "name": name}}


def service(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "team", "name": name, "labels": labels}, "spec": {}}


def sink_object(name: str, url: str | None, **status: Any) -> dict[str, Any]:
    address = {"url": url} if url else None
    return {
        "metadata": {"namespace": "team", "name": name},
        "status": {"address": address, **status},
    }


class Notified:
    def __init__(self) -> None:
        self.batches: list[list[SourceKey]] = []

    def __call__(self, keys: Iterable[SourceKey]) -> None:
        self.batches.append(sorted(keys))


def resolver() -> tuple[ClusterResolver, Notified, ApiClient]:
    api = client_for("http://127.0.0.1:9")
    made = ClusterResolver(api, cluster_domain="cluster.local")
    notified = Notified()
    made.subscribe(notified)
    return made, notified, api


async def test_a_service_sink_waits_for_the_first_list_then_needs_the_service() -> None:
    cluster, notified, api = resolver()
    async with api:
        a = spec("a", to_service("display", "/in"))

        waiting = cluster.resolve(a)
        cluster.index(SERVICE).replace_all([service("other")])
        missing = cluster.resolve(a)
        cluster.index(SERVICE).apply("ADDED", service("display"))
        found = cluster.resolve(a)

    assert isinstance(waiting, Unresolved) and waiting.waiting
    assert missing == Unresolved('Service "display" (v1) in namespace "team" not found')
    assert found == Target("http://display.team.svc.cluster.local/in")
    assert notified.batches == [[A], [A]]  # the first list, then the Service's creation


async def test_a_kind_is_known_once_its_whole_list_is_in_not_at_its_first_page() -> None:
    cluster, notified, api = resolver()
    async with api:
        a = spec("a", to_service("display"))
        cluster.resolve(a)
        listing = cluster.index(SERVICE).begin_list()

        listing.add([service("other")])
        after_page = cluster.resolve(a)
        listing.add([service("display")])
        listing.finish()
        after_list = cluster.resolve(a)

    assert isinstance(after_page, Unresolved) and after_page.waiting
    assert after_list == Target("http://display.team.svc.cluster.local/")
    assert notified.batches == [[A]]


async def test_only_changes_that_resolution_reads_re_resolve_the_dependents() -> None:
    cluster, notified, api = resolver()
    async with api:
        cluster.resolve(spec("a", to_service("display")))
        index = cluster.index(SERVICE)
        index.replace_all([service("display")])
        notified.batches.clear()

        index.apply("MODIFIED", service("display", touched="yes"))  # labels: nothing to do
        index.apply("ADDED", service("unrelated"))
        index.replace_all([service("display"), service("unrelated")])  # a relist, no change
        index.apply("DELETED", service("display"))

        assert notified.batches == [[A]]
        assert isinstance(cluster.resolve(spec("a", to_service("display"))), Unresolved)


async def test_an_addressable_is_re_resolved_when_its_address_changes() -> None:
    cluster, notified, api = resolver()
    async with api:
        a = spec("a", to_sink("s"))
        cluster.resolve(a)
        index = cluster.index(SINK_KIND)
        index.replace_all([sink_object("s", None)])
        no_address = cluster.resolve(a)

        index.apply("MODIFIED", sink_object("s", "http://s.example/"))
        first = cluster.resolve(a)
        index.apply("MODIFIED", sink_object("s", "http://s.example/", observedGeneration=9))
        index.apply("MODIFIED", sink_object("s", "http://moved.example/"))
        second = cluster.resolve(a)

    assert isinstance(no_address, Unresolved) and "has no address yet" in no_address.message
    assert (first, second) == (Target("http://s.example/"), Target("http://moved.example/"))
    assert notified.batches == [[A], [A], [A]]  # list, address set, address moved


async def test_the_reverse_index_follows_each_source_to_its_current_ref() -> None:
    cluster, notified, api = resolver()
    async with api:
        cluster.resolve(spec("a", to_service("one")))
        cluster.resolve(spec("b", to_service("one")))
        index = cluster.index(SERVICE)
        index.replace_all([])
        cluster.resolve(spec("a", to_service("two")))  # a moved to another Service
        notified.batches.clear()

        index.apply("ADDED", service("one"))
        index.apply("ADDED", service("two"))
        cluster.forget(B)
        cluster.resolve(spec("a", {"uri": "http://elsewhere.example/"}))
        index.apply("DELETED", service("one"))
        index.apply("DELETED", service("two"))

    assert notified.batches == [[B], [A]]


async def test_a_kind_that_cannot_be_listed_says_why_until_a_list_succeeds() -> None:
    cluster, notified, api = resolver()
    async with api:
        a = spec("a", to_sink("s"))
        cluster.resolve(a)
        index = cluster.index(SINK_KIND)

        index.list_failed(ApiStatusError(403, "Forbidden"))
        forbidden = cluster.resolve(a)
        index.list_failed(ApiStatusError(403, "Forbidden"))  # the same again: nobody told
        index.replace_all([sink_object("s", "http://s.example/")])
        index.list_failed(ApiUnavailable("the apiserver restarted"))  # listed once: kept
        listed = cluster.resolve(a)

    assert isinstance(forbidden, Unresolved) and not forbidden.waiting
    assert forbidden.reason == "NotFound"
    assert "may not list" in forbidden.message
    assert "duck.knative.dev/addressable=true" in forbidden.message
    assert listed == Target("http://s.example/")
    assert notified.batches == [[A], [A]]


async def test_a_uri_sink_needs_no_watch() -> None:
    cluster, _, api = resolver()
    async with api:
        resolved = cluster.resolve(spec("a", {"uri": "http://hooks.example/x"}))

    assert resolved == Target("http://hooks.example/x")
    assert cluster.watched_kinds == ()
