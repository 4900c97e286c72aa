"""The registry of PingSources: turns watched objects into scheduler entries.

It is the consumer of the watch (cluster mode: lists page by page, `begin_list`) and of the
file loader (local mode, `replace_all`): each raw object is parsed into a validated spec, its
sink resolved, its event template built once, and the result upserted into the scheduler. An
object whose resourceVersion is unchanged (a resync, a relist) costs one dict lookup and
touches nothing. An invalid or unresolvable source is unscheduled and its reason kept, logged
once per change; it never raises out of here, so one tenant's bad object cannot stop the watch
that serves everybody else.

The last valid spec of each source is kept, so `reresolve` can resolve it again when its sink
changes, without the raw object. Each outcome (scheduled with its sink, unresolved, invalid)
is reported to a `SourceObserver`: standalone mode's status writer; nobody in adapter mode.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from mtping import metrics
from mtping.delivery import PreparedRequest, Target, prepare_request
from mtping.event import EventTemplate, build_template
from mtping.model import InvalidSource, PingSourceSpec, SourceKey, source_key
from mtping.model.status import Invalid, Outcome, Scheduled
from mtping.resolving import Resolver, TrackingResolver, Unresolved
from mtping.scheduler import Scheduler

log = logging.getLogger(__name__)

RawObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Firing:
    """What a tick needs to send one source's event; built once per source change."""

    key: SourceKey
    template: EventTemplate
    target: Target
    request: PreparedRequest = field(init=False, repr=False, compare=False)
    """The sink's HTTP request minus `ce-id`/`ce-time`, encoded once here, not per tick."""

    def __post_init__(self) -> None:
        request = prepare_request(self.target, self.template.headers, self.template.body)
        object.__setattr__(self, "request", request)


@dataclass(frozen=True, slots=True)
class Problem:
    reason: str
    """"invalid" or "unresolved": the label of `mtping_sources_unscheduled`."""
    message: str
    routine: bool = False
    """Waiting for a sink kind's first list, as every source does at startup: not logged."""


class SourceObserver(Protocol):
    """Told what became of each source; must not block (it runs inside the watch)."""

    def source_changed(self, key: SourceKey, obj: RawObject, outcome: Outcome) -> None:
        """A new version of the object `obj` was processed into `outcome`."""

    def source_reresolved(self, key: SourceKey, outcome: Outcome) -> None:
        """The same object, its sink resolved again (the referenced object changed)."""

    def source_deleted(self, key: SourceKey) -> None: ...


class NoObserver:
    def source_changed(self, key: SourceKey, obj: RawObject, outcome: Outcome) -> None:
        """Nobody to tell."""

    def source_reresolved(self, key: SourceKey, outcome: Outcome) -> None:
        """Nobody to tell."""

    def source_deleted(self, key: SourceKey) -> None:
        """Nobody to tell."""


class SourceRegistry:
    """Applies watch events and full lists to the scheduler (see the module docstring)."""

    def __init__(
        self,
        *,
        scheduler: Scheduler[SourceKey, Firing],
        resolver: Resolver,
        parse: Callable[[RawObject], PingSourceSpec],
        observer: SourceObserver | None = None,
    ) -> None:
        self._scheduler = scheduler
        self._resolver = resolver
        self._tracking = resolver if isinstance(resolver, TrackingResolver) else None
        self._parse = parse
        self._observer = observer or NoObserver()
        self._versions: dict[SourceKey, str] = {}
        self._specs: dict[SourceKey, PingSourceSpec] = {}
        self.problems: dict[SourceKey, Problem] = {}

    def __len__(self) -> int:
        return len(self._versions)

    def begin_list(self) -> ListedSources:
        """A full list, page by page: each page is applied as it comes, and what the whole
        list did not contain is forgotten when it is finished (the watch's Consumer)."""
        return ListedSources(self)

    def replace_all(self, objects: Iterable[RawObject]) -> None:
        """Make the registry equal to `objects`: what is missing from them was deleted."""
        listing = self.begin_list()
        listing.add(objects)
        listing.finish()

    def apply(self, event_type: str, obj: RawObject) -> None:
        if event_type == "DELETED":
            key = _key_or_none(obj)
            if key is not None:
                self._forget(key)
        else:
            self._apply_change(obj)

    def _apply_change(self, obj: RawObject) -> SourceKey | None:
        key = _key_or_none(obj)
        if key is None:
            return None
        version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        if version and self._versions.get(key) == version:
            return key
        self._versions[key] = version
        self._observer.source_changed(key, obj, self._parse_and_schedule(key, obj))
        return key

    def reresolve(self, keys: Iterable[SourceKey]) -> None:
        """Resolve these sources' sinks again: what they refer to changed."""
        for key in keys:
            spec = self._specs.get(key)
            if spec is not None:
                self._observer.source_reresolved(key, self._schedule(spec))

    def _parse_and_schedule(self, key: SourceKey, obj: RawObject) -> Outcome:
        try:
            spec = self._parse(obj)
        except InvalidSource as error:
            self._specs.pop(key, None)
            if self._tracking is not None:
                self._tracking.forget(key)
            self._unschedule(key, Problem("invalid", str(error)))
            return Invalid(str(error))
        self._specs[key] = spec
        return self._schedule(spec)

    def _schedule(self, spec: PingSourceSpec) -> Outcome:
        key = spec.key
        target = self._resolver.resolve(spec)
        if isinstance(target, Unresolved):
            self._unschedule(key, Problem("unresolved", target.message, routine=target.waiting))
            return target
        old = self.problems.get(key)
        if self._set_problem(key, None) and old is not None and not old.routine:
            log.info("%s: scheduled again", key)
        self._scheduler.upsert(key, spec.schedule, Firing(key, build_template(spec), target))
        return Scheduled(target.url, target.ca_certs, target.audience)

    def _unschedule(self, key: SourceKey, problem: Problem) -> None:
        self._scheduler.remove(key)
        if self._set_problem(key, problem) and not problem.routine:
            log.warning("%s: not scheduled: %s", key, problem.message)

    def _forget(self, key: SourceKey) -> None:
        self._versions.pop(key, None)
        self._specs.pop(key, None)
        if self._tracking is not None:
            self._tracking.forget(key)
        self._scheduler.remove(key)
        self._set_problem(key, None)
        self._observer.source_deleted(key)

    def _forget_all_but(self, listed: set[SourceKey]) -> None:
        """A full list ended: what it did not hold was deleted meanwhile."""
        for gone in self._versions.keys() - listed:
            self._forget(gone)
        _freeze_long_lived()

    def _set_problem(self, key: SourceKey, problem: Problem | None) -> bool:
        """Record (or clear, with None) why `key` is unscheduled; True if that changed."""
        old = self.problems.get(key)
        if old == problem:
            return False
        if old is not None:
            del self.problems[key]
            metrics.UNSCHEDULED_SOURCES.labels(reason=old.reason).dec()
        if problem is not None:
            self.problems[key] = problem
            metrics.UNSCHEDULED_SOURCES.labels(reason=problem.reason).inc()
        return True


class ListedSources:
    """One full list being applied to a registry: its pages are applied at once, and the keys
    they held remembered, so that `finish` can forget the sources the list no longer has.
    Dropped unfinished (a list that failed half-way), it has deleted nothing."""

    def __init__(self, registry: SourceRegistry) -> None:
        self._registry = registry
        self._listed: set[SourceKey] = set()

    def add(self, objects: Iterable[RawObject]) -> None:
        for obj in objects:
            key = self._registry._apply_change(obj)
            if key is not None:
                self._listed.add(key)

    def finish(self) -> None:
        self._registry._forget_all_but(self._listed)
        self._listed = set()


def _freeze_long_lived() -> None:
    """Exempt what a full list built (specs, templates, prepared requests: long-lived) from the
    cyclic garbage collector's full passes. With 30k sources one full pass during a tick's
    burst costs ~0.3 s of lateness (bench/README.md). Frozen objects are still freed by
    reference counting when they die; only garbage *cycles* among them stay. No collection
    first: the watch pauses the collector during a list, so the young generation holds every
    object the list built, and collecting it was a pass over all of them (16 % of a list's
    CPU, ~1 s at 100k sources). The cycles a list leaves are a few per page request."""
    gc.freeze()


def _key_or_none(obj: RawObject) -> SourceKey | None:
    try:
        return source_key(obj)
    except InvalidSource as error:
        log.warning("ignoring an object without namespace/name: %s", error)
        return None
