"""The registry: watched objects in, scheduler entries out; unchanged objects cost nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from mtping.delivery import Target
from mtping.model import PingSourceSpec, SourceKey, parse_source
from mtping.model.status import Invalid, Outcome, Scheduled
from mtping.resolving import SpecResolver, Unresolved
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


def test_a_paged_list_schedules_each_page_at_once_and_forgets_only_when_finished() -> None:
    registry, scheduler, _ = make_registry()
    registry.replace_all([pingsource("a"), pingsource("gone")])
    listing = registry.begin_list()

    listing.add([pingsource("a"), pingsource("b")])
    assert (len(scheduler), len(registry)) == (3, 3), "page 1 applied, nothing forgotten yet"
    listing.add([pingsource("c")])
    listing.finish()

    assert (len(scheduler), len(registry)) == (3, 3)  # a, b, c: "gone" was not listed


def test_an_unfinished_list_forgets_nothing_and_the_next_list_does() -> None:
    registry, scheduler, parse = make_registry()
    registry.replace_all([pingsource("a"), pingsource("gone")])
    broken = registry.begin_list()
    broken.add([pingsource("a"), pingsource("b")])  # then the list fails
    assert len(scheduler) == 3, "gone is kept: the list that would say so never finished"

    retry = registry.begin_list()
    retry.add([pingsource("a"), pingsource("b")])
    retry.finish()

    assert len(scheduler) == 2
    assert parse.calls == 3, "a, gone, b: the retry's pages were already applied"


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


# --- what the registry reports, and re-resolving ------------------------------------------


class Recorder:
    """A SourceObserver that keeps every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, SourceKey, Outcome | None]] = []

    def source_changed(self, key: SourceKey, obj: dict[str, Any], outcome: Outcome) -> None:
        self.calls.append(("changed", key, outcome))

    def source_reresolved(self, key: SourceKey, outcome: Outcome) -> None:
        self.calls.append(("reresolved", key, outcome))

    def source_deleted(self, key: SourceKey) -> None:
        self.calls.append(("deleted", key, None))


class SwitchableResolver:
    """Resolves refs to whatever `targets` holds now; remembers what it was told to forget."""

    def __init__(self) -> None:
        self.targets: dict[str, Target | Unresolved] = {}
        self.forgotten: list[SourceKey] = []

    def resolve(self, spec: PingSourceSpec) -> Target | Unresolved:
        if spec.sink.ref is None:
            return Target(spec.sink.uri or "")
        return self.targets.get(spec.sink.ref.name, Unresolved("not found"))

    def forget(self, key: SourceKey) -> None:
        self.forgotten.append(key)


REF = {"ref": {"apiVersion": "v1", "kind": "Service", "name": "display"}}
A = SourceKey("team", "a")


def observed_registry() -> tuple[
    SourceRegistry, Scheduler[SourceKey, Firing], Recorder, SwitchableResolver
]:
    scheduler: Scheduler[SourceKey, Firing] = Scheduler(
        fire=lambda tick, now: None, catch_up=timedelta(seconds=10)
    )
    observer, resolver = Recorder(), SwitchableResolver()
    registry = SourceRegistry(
        scheduler=scheduler, resolver=resolver, parse=parse_source, observer=observer
    )
    return registry, scheduler, observer, resolver


def test_each_new_version_is_reported_with_its_outcome_and_a_resync_is_not() -> None:
    registry, _, observer, _ = observed_registry()

    registry.replace_all([pingsource("a"), pingsource("b", sink=REF)])
    registry.replace_all([pingsource("a"), pingsource("b", sink=REF)])  # a relist
    registry.apply("MODIFIED", pingsource("a", version="2", schedule="@every 1m"))

    first, second, third = observer.calls
    assert first == ("changed", A, Scheduled("http://sink.example/"))
    assert second == ("changed", SourceKey("team", "b"), Unresolved("not found"))
    assert third[:2] == ("changed", A)
    assert isinstance(third[2], Invalid)
    assert "spec.schedule" in third[2].message


def test_reresolve_schedules_a_source_whose_sink_appeared() -> None:
    registry, scheduler, observer, resolver = observed_registry()
    registry.apply("ADDED", pingsource("a", sink=REF))
    assert len(scheduler) == 0

    resolver.targets["display"] = Target("http://display.team.svc.cluster.local/")
    registry.reresolve([A, SourceKey("team", "unknown")])

    assert len(scheduler) == 1
    assert A not in registry.problems
    assert observer.calls[-1] == (
        "reresolved",
        A,
        Scheduled("http://display.team.svc.cluster.local/"),
    )


def test_reresolve_unschedules_a_source_whose_sink_went_away() -> None:
    registry, scheduler, observer, resolver = observed_registry()
    resolver.targets["display"] = Target("http://display/")
    registry.apply("ADDED", pingsource("a", sink=REF))

    del resolver.targets["display"]
    registry.reresolve([A])

    assert len(scheduler) == 0
    assert registry.problems[A].reason == "unresolved"
    assert observer.calls[-1] == ("reresolved", A, Unresolved("not found"))


def test_an_invalid_or_deleted_source_is_forgotten_by_the_resolver_and_not_reresolved() -> None:
    registry, _, observer, resolver = observed_registry()
    registry.apply("ADDED", pingsource("a", sink=REF))
    registry.apply("ADDED", pingsource("b", sink=REF))

    registry.apply("MODIFIED", pingsource("a", version="2", schedule="@every 1m"))
    registry.apply("DELETED", pingsource("b"))
    calls = len(observer.calls)
    registry.reresolve([A, SourceKey("team", "b")])

    assert resolver.forgotten == [A, SourceKey("team", "b")]
    assert observer.calls[-1] == ("deleted", SourceKey("team", "b"), None)
    assert len(observer.calls) == calls
