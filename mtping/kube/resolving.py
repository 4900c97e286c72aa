"""Standalone sink resolution: watch the objects sinks refer to, re-resolve their dependents.

The first time a source refers to a kind (a core v1 Service, a Knative Broker, any
Addressable), that kind's plural is discovered and one cluster-wide list+watch of it starts
(`watching.watch_forever`, as for PingSources). Per object it keeps only what resolution needs
(`model.addressable.Addressable`: its address URLs, CACerts and audience; for a Service, that it
exists), never the object. A reverse index maps each referenced object to the sources that
refer to it; when the object appears, changes what resolution reads, or goes away, exactly
those sources are handed to the registry's `reresolve`. No source is ever polled.

Until a kind's first list arrives its sources are `Unresolved(waiting=True)`, which publishes
nothing; a kind that cannot be listed (not served, or RBAC forbids it) makes them NotFound,
with a message saying what to fix, until a later list succeeds. The rules themselves (Service
DNS name, address selection, relative URIs, overrides) are pure, in `mtping.resolving`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from kubernetes_asyncio.client import ApiClient

from mtping.delivery import Target
from mtping.kube.discovery import NotServed, discover, split_api_version
from mtping.kube.errors import ApiStatusError, KubeError
from mtping.kube.watching import (
    Backoff,
    CollectedList,
    RawObject,
    Resource,
    WatchSettings,
    watch_forever,
)
from mtping.model import PingSourceSpec, SinkRef, SourceKey
from mtping.model.addressable import EXISTS, Addressable, read_addressable
from mtping.model.status import Unresolved
from mtping.resolving import (
    addressable_target,
    describe_ref,
    is_service,
    service_target,
    uri_target,
)

log = logging.getLogger(__name__)

ROLE_LABEL = "duck.knative.dev/addressable=true"
DEFAULT_WATCH = WatchSettings()


@dataclass(frozen=True, slots=True)
class Kind:
    group: str
    version: str
    kind: str

    def __str__(self) -> str:
        return f"{self.kind} ({self.group}/{self.version})" if self.group else self.kind


ObjectId = tuple[str, str]
"""(namespace, name) of a referenced object."""
Notify = Callable[[Iterable[SourceKey]], None]


@dataclass(slots=True)
class _Tracked:
    kind: Kind
    object_id: ObjectId


class ClusterResolver:
    """Resolves sinks from watched objects; tells `subscribe`'s callback what to re-resolve."""

    def __init__(
        self,
        api: ApiClient,
        *,
        cluster_domain: str,
        watch_settings: WatchSettings = DEFAULT_WATCH,
        retry_cap: float = 30.0,
    ) -> None:
        self._api = api
        self._cluster_domain = cluster_domain
        self._watch_settings = watch_settings
        self._retry_cap = retry_cap
        self._indexes: dict[Kind, KindIndex] = {}
        self._refs: dict[SourceKey, _Tracked] = {}
        self._dependents: dict[Kind, dict[ObjectId, set[SourceKey]]] = {}
        self._started: asyncio.Queue[KindIndex] = asyncio.Queue()
        self._notify: Notify = lambda keys: None

    @property
    def watched_kinds(self) -> tuple[Kind, ...]:
        return tuple(self._indexes)

    def subscribe(self, notify: Notify) -> None:
        """`notify(keys)` is called with the sources whose sink may resolve differently now."""
        self._notify = notify

    # --- the Resolver protocol, called by the registry -----------------------------------

    def resolve(self, spec: PingSourceSpec) -> Target | Unresolved:
        ref = spec.sink.ref
        if ref is None:
            self.forget(spec.key)
            return uri_target(spec.sink)
        kind = Kind(*split_api_version(ref.api_version), ref.kind)
        self._track(spec.key, kind, (ref.namespace, ref.name))
        found = self.index(kind).lookup(ref)
        if isinstance(found, Unresolved):
            return found
        if is_service(ref):
            return service_target(spec.sink, ref, self._cluster_domain)
        return addressable_target(spec.sink, ref, found)

    def forget(self, key: SourceKey) -> None:
        tracked = self._refs.pop(key, None)
        if tracked is None:
            return
        by_object = self._dependents.get(tracked.kind, {})
        keys = by_object.get(tracked.object_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del by_object[tracked.object_id]

    # --- watching ------------------------------------------------------------------------

    async def run(self) -> None:
        """Start each kind's watch as it is first referenced; runs until cancelled."""
        async with asyncio.TaskGroup() as watches:
            while True:
                index = await self._started.get()
                watches.create_task(index.run(), name=f"watch {index.kind}")

    def index(self, kind: Kind) -> KindIndex:
        """The index of `kind`, created (its watch to start) on first use."""
        index = self._indexes.get(kind)
        if index is None:
            index = KindIndex(
                kind,
                api=self._api,
                on_change=self._changed,
                watch_settings=self._watch_settings,
                retry_cap=self._retry_cap,
            )
            self._indexes[kind] = index
            self._started.put_nowait(index)
        return index

    def _track(self, key: SourceKey, kind: Kind, object_id: ObjectId) -> None:
        tracked = self._refs.get(key)
        if tracked is not None and (tracked.kind, tracked.object_id) == (kind, object_id):
            return
        self.forget(key)
        self._refs[key] = _Tracked(kind, object_id)
        self._dependents.setdefault(kind, {}).setdefault(object_id, set()).add(key)

    def _changed(self, kind: Kind, object_ids: Iterable[ObjectId] | None) -> None:
        """Objects of `kind` changed (None: all of them, e.g. its first list arrived)."""
        by_object = self._dependents.get(kind, {})
        chosen = by_object.keys() if object_ids is None else object_ids
        # Copied first: re-resolving edits the index being read.
        keys = [key for object_id in chosen for key in by_object.get(object_id, ())]
        if keys:
            log.debug("%d source(s) to re-resolve after a change of %s", len(keys), kind)
            self._notify(keys)


@dataclass(slots=True)
class KindIndex:
    """One watched kind: what resolution needs of each object, and whether it is known yet.

    The watch's Consumer (`begin_list`, `apply`): values are compared, so a change that
    resolution does not read (a label, an unrelated status field) re-resolves nobody.
    """

    kind: Kind
    api: ApiClient
    on_change: Callable[[Kind, Iterable[ObjectId] | None], None]
    watch_settings: WatchSettings = DEFAULT_WATCH
    retry_cap: float = 30.0
    objects: dict[ObjectId, Addressable] = field(default_factory=dict)
    synced: bool = False
    failure: str | None = None
    """Why the kind cannot be listed, while it cannot and was never listed."""
    resource: Resource | None = None

    def lookup(self, ref: SinkRef) -> Addressable | Unresolved:
        if not self.synced:
            if self.failure is not None:
                return Unresolved(self.failure)
            return Unresolved(f"waiting for the first list of {self.kind}", waiting=True)
        found = self.objects.get((ref.namespace, ref.name))
        if found is None:
            return Unresolved(f"{describe_ref(ref)} not found")
        return found

    async def run(self) -> None:
        self.resource = await self._discover()
        await watch_forever(
            self.api,
            self,
            resource=self.resource,
            settings=self.watch_settings,
            on_error=self.list_failed,
        )

    async def _discover(self) -> Resource:
        backoff = Backoff(1.0, self.retry_cap)
        while True:
            try:
                return await discover(
                    self.api, group=self.kind.group, version=self.kind.version, kind=self.kind.kind
                )
            except KubeError as error:
                delay = backoff.next_delay()
                log.warning(
                    "cannot resolve %s sinks (retrying in %.0fs): %s", self.kind, delay, error
                )
                self._fail(_explain(self.kind, None, error))
                await asyncio.sleep(delay)

    def list_failed(self, error: KubeError) -> None:
        """The watch's `on_error`: a list of this kind failed."""
        if not self.synced:  # once listed, keep serving what was last known, as informers do
            self._fail(_explain(self.kind, self.resource, error))

    def _fail(self, message: str) -> None:
        if message != self.failure:
            self.failure = message
            self.on_change(self.kind, None)

    # --- Consumer ------------------------------------------------------------------------

    def begin_list(self) -> CollectedList:
        """Whole lists at once: sink kinds are small, and a diff needs the old and new sets."""
        return CollectedList(self.replace_all)

    def replace_all(self, objects: list[RawObject]) -> None:
        fresh = dict(entry for obj in objects if (entry := self._entry(obj)) is not None)
        old, self.objects = self.objects, fresh
        if not self.synced:
            self.synced, self.failure = True, None
            self.on_change(self.kind, None)
            return
        changed = [oid for oid in old.keys() | fresh.keys() if old.get(oid) != fresh.get(oid)]
        if changed:
            self.on_change(self.kind, changed)

    def apply(self, event_type: str, obj: RawObject) -> None:
        entry = self._entry(obj)
        if entry is None:
            return
        object_id, value = entry
        if event_type == "DELETED":
            if self.objects.pop(object_id, None) is not None:
                self.on_change(self.kind, [object_id])
        elif self.objects.get(object_id) != value:
            self.objects[object_id] = value
            self.on_change(self.kind, [object_id])

    def _entry(self, obj: RawObject) -> tuple[ObjectId, Addressable] | None:
        metadata = obj.get("metadata")
        if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
            return None
        object_id = (str(metadata.get("namespace") or ""), str(metadata["name"]))
        is_core_service = self.kind == SERVICE
        return object_id, EXISTS if is_core_service else read_addressable(obj)


SERVICE = Kind("", "v1", "Service")


def _explain(kind: Kind, resource: Resource | None, error: KubeError) -> str:
    if isinstance(error, NotServed):
        return f"cannot resolve {kind} sinks: {error}"
    if isinstance(error, ApiStatusError) and error.status == 403:
        what = f"{resource.plural}.{resource.group or 'core'}" if resource else str(kind)
        return (
            f"mtping may not list {what}: grant get, list and watch on it in a ClusterRole "
            f"labelled {ROLE_LABEL}"
        )
    return f"cannot list {kind} sinks yet: {error}"
