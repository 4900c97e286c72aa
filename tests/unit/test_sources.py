"""The registry: watched objects in, scheduler entries out; unchanged objects cost nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from mtping.model import SourceKey, parse_source
from mtping.resolving import SpecResolver
from mtping.scheduler import Scheduler
from mtping.sources import Firing, SourceRegistry


def pingsource(name: str, version: str = "1", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "PingSource",
        "metadata": {
            "namespace": "team",
            "name": name,
            "uid": f"uid-{name}",
            "resourceVersion": version,
            "generation": 1,
        },
        "spec": {"schedule": "* * * * *", "sink": {"uri": "http://sink.example/"}, **spec},
    }


class CountingParse:
    """parse_source, counting its calls: the cost of an event the registry should skip."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, obj: dict[str, Any]) -> Any:
        self.calls += 1
        return parse_source(obj)


def make_registry() -> tuple[SourceRegistry, Scheduler[SourceKey, Firing], CountingParse]:
    scheduler: Scheduler[SourceKey, Firing] = Scheduler(
        fire=lambda tick, now: None, catch_up=timedelta(seconds=10)
    )
    parse = CountingParse()
    registry = SourceRegistry(scheduler=scheduler, resolver=SpecResolver(), parse=parse)
    return registry, scheduler, parse


def test_added_sources_are_scheduled() -> None:
    registry, scheduler, _ = make_registry()

    registry.replace_all([pingsource("a"), pingsource("b", schedule="*/2 * * * * *")])

    assert len(scheduler) == 2
    assert registry.problems == {}


def test_an_unchanged_resource_version_is_not_parsed_again() -> None:
    registry, scheduler, parse = make_registry()
    registry.replace_all([pingsource("a")])

    registry.replace_all([pingsource("a")])  # a relist
    registry.apply("MODIFIED", pingsource("a"))  # a resync

    assert parse.calls == 1
    assert len(scheduler) == 1


def test_relist_forgets_what_is_gone() -> None:
    registry, scheduler, _ = make_registry()
    registry.replace_all([pingsource("a"), pingsource("b")])

    registry.replace_all([pingsource("b")])

    assert len(scheduler) == 1
    assert len(registry) == 1


def test_delete_unschedules() -> None:
    registry, scheduler, _ = make_registry()
    registry.apply("ADDED", pingsource("a"))

    registry.apply("DELETED", pingsource("a", version="2"))

    assert len(scheduler) == 0


def test_an_invalid_update_unschedules_and_keeps_the_reason_then_a_fix_reschedules() -> None:
    registry, scheduler, _ = make_registry()
    registry.apply("ADDED", pingsource("a"))

    registry.apply("MODIFIED", pingsource("a", version="2", schedule="@every 1m"))

    key = SourceKey("team", "a")
    assert len(scheduler) == 0
    assert registry.problems[key].reason == "invalid"
    assert "spec.schedule" in registry.problems[key].message

    registry.apply("MODIFIED", pingsource("a", version="3"))

    assert len(scheduler) == 1
    assert key not in registry.problems


def test_a_source_without_a_resolvable_sink_is_unresolved_not_invalid() -> None:
    registry, scheduler, _ = make_registry()
    addressable = {"ref": {"apiVersion": "example.com/v1", "kind": "Sink", "name": "s"}}

    registry.apply("ADDED", pingsource("a", sink=addressable))

    assert len(scheduler) == 0
    assert registry.problems[SourceKey("team", "a")].reason == "unresolved"


def test_an_object_without_a_name_is_ignored_without_raising() -> None:
    registry, scheduler, _ = make_registry()

    registry.apply("ADDED", {"metadata": {}, "spec": "junk"})

    assert len(scheduler) == 0
    assert len(registry) == 0
