"""The registry of PingSources: turns watched objects into scheduler entries.

It is the consumer of the watch (cluster mode) and of the file loader (local mode): each raw
object is parsed into a validated spec, its sink resolved, its event template built once, and
the result upserted into the scheduler. An object whose resourceVersion is unchanged (a resync,
a relist) costs one dict lookup and touches nothing. An invalid or unresolvable source is
unscheduled and its reason kept, logged once per change; it never raises out of here, so one
tenant's bad object cannot stop the watch that serves everybody else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from mtping import metrics
from mtping.delivery import Target
from mtping.event import EventTemplate, build_template
from mtping.model import InvalidSource, PingSourceSpec, SourceKey, source_key
from mtping.resolving import Resolver, Unresolved
from mtping.scheduler import Scheduler

log = logging.getLogger(__name__)

RawObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Firing:
    """What a tick needs to send one source's event; built once per source change."""

    key: SourceKey
    template: EventTemplate
    target: Target


@dataclass(frozen=True, slots=True)
class Problem:
    reason: str
    """"invalid" or "unresolved": the label of `mtping_sources_unscheduled`."""
    message: str


class SourceRegistry:
    """Applies watch events and full lists to the scheduler (see the module docstring)."""

    def __init__(
        self,
        *,
        scheduler: Scheduler[SourceKey, Firing],
        resolver: Resolver,
        parse: Callable[[RawObject], PingSourceSpec],
    ) -> None:
        self._scheduler = scheduler
        self._resolver = resolver
        self._parse = parse
        self._versions: dict[SourceKey, str] = {}
        self.problems: dict[SourceKey, Problem] = {}

    def __len__(self) -> int:
        return len(self._versions)

    def replace_all(self, objects: Iterable[RawObject]) -> None:
        """Make the registry equal to `objects`: what is missing from them was deleted."""
        listed: set[SourceKey] = set()
        for obj in objects:
            key = self._apply_change(obj)
            if key is not None:
                listed.add(key)
        for gone in self._versions.keys() - listed:
            self._forget(gone)

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
        self._schedule(key, obj)
        return key

    def _schedule(self, key: SourceKey, obj: RawObject) -> None:
        try:
            spec = self._parse(obj)
        except InvalidSource as error:
            self._unschedule(key, Problem("invalid", str(error)))
            return
        target = self._resolver.resolve(spec)
        if isinstance(target, Unresolved):
            self._unschedule(key, Problem("unresolved", target.reason))
            return
        if self._set_problem(key, None):
            log.info("%s: scheduled again", key)
        self._scheduler.upsert(key, spec.schedule, Firing(key, build_template(spec), target))

    def _unschedule(self, key: SourceKey, problem: Problem) -> None:
        self._scheduler.remove(key)
        if self._set_problem(key, problem):
            log.warning("%s: not scheduled: %s", key, problem.message)

    def _forget(self, key: SourceKey) -> None:
        self._versions.pop(key, None)
        self._scheduler.remove(key)
        self._set_problem(key, None)

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


def _key_or_none(obj: RawObject) -> SourceKey | None:
    try:
        return source_key(obj)
    except InvalidSource as error:
        log.warning("ignoring an object without namespace/name: %s", error)
        return None
