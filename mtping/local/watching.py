"""Keeps the engine's registry equal to what the files say, as they change.

Every `POLL_SECONDS` the PATHs are listed and each file stat()ed; a file whose stamp (inode,
size, mtime, ctime) changed and then held still for one more poll is read again, so an edit
shows within about half a second and a file caught half-written by a non-atomic save is not
read. Polling, not inotify: no new dependency (watchfiles, watchdog), the same behaviour on
Linux, macOS, bind mounts and network filesystems, where change notification is unreliable,
and a few stat() calls every 0.2 s cost nothing for the handful of files local mode reads.

A file's sources change only when a version of it loads without a problem: a bad edit (a YAML
syntax error, an invalid source) is reported and the last good version of that file stays
scheduled. A file seen for the first time contributes its valid sources even if others in it
are not. Sources whose sink cannot be resolved, and second definitions of a namespace/name,
are reported once and skipped. The result goes to the registry with `replace_all`: a whole
list, as a cluster relist applies one, so the engine cannot tell local mode from a cluster.
File reads run in a worker thread; the registry is only touched from the event loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from mtping.delivery import Target
from mtping.lifecycle import Parse
from mtping.local.loading import FileLoad, LocalSource, Problem, find_files, load_file
from mtping.model import SourceKey
from mtping.resolving import Resolver, Unresolved

POLL_SECONDS: Final = 0.2

Stamp = tuple[int, int, int, int]  # (inode, size, mtime_ns, ctime_ns)


class Registry(Protocol):
    def replace_all(self, objects: Iterable[dict[str, Any]]) -> None: ...


@dataclass(frozen=True, slots=True)
class Scheduled:
    source: LocalSource
    target: Target


@dataclass(frozen=True, slots=True)
class Skipped:
    source: LocalSource
    reason: str


@dataclass(frozen=True, slots=True)
class Reload:
    """What one reload changed, for the human watching: only news, never a repeat."""

    problems: tuple[Problem, ...] = ()
    """Problems of the files read this time."""
    kept: tuple[tuple[str, int], ...] = ()
    """(file, sources kept) for each file whose new version was refused."""
    skipped: tuple[Skipped, ...] = ()
    """Sources newly skipped: unresolvable sink, or a namespace/name defined twice."""
    added: tuple[Scheduled, ...] = ()
    changed: tuple[Scheduled, ...] = ()
    removed: tuple[SourceKey, ...] = ()
    files: int = 0
    """Files watched after this reload."""


@dataclass(slots=True)
class _Watched:
    stamp: Stamp
    accepted: tuple[LocalSource, ...]
    """The sources of the file's last good version (or valid part of its first one)."""


@dataclass(slots=True)
class _Assembly:
    scheduled: dict[SourceKey, Scheduled] = field(default_factory=dict)
    skipped: dict[SourceKey, list[Skipped]] = field(default_factory=dict)


Change = tuple[Stamp, FileLoad] | None  # None: the file is gone


class Reloader:
    """Loads the PATHs once (`load`), then polls them (`run`) and reports each `Reload`."""

    def __init__(
        self,
        *,
        paths: Sequence[Path],
        parse: Parse,
        resolver: Resolver,
        registry: Registry,
        on_reload: Callable[[Reload], None],
        interval: float = POLL_SECONDS,
    ) -> None:
        self._paths = tuple(paths)
        self._parse = parse
        self._resolver = resolver
        self._registry = registry
        self._on_reload = on_reload
        self._interval = interval
        self._files: dict[Path, _Watched] = {}
        self._last_poll: dict[Path, Stamp] = {}
        self._scheduled: dict[SourceKey, Scheduled] = {}
        self._skip_reasons: set[tuple[SourceKey, str, str]] = set()

    @property
    def scheduled(self) -> dict[SourceKey, Scheduled]:
        return dict(self._scheduled)

    async def load(self) -> Reload:
        """Read every file now (no settling: nobody is editing at startup) and report it."""
        changes = await asyncio.to_thread(self._read_changes, settle=False)
        return self._report(self._apply(changes))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.poll()

    async def poll(self) -> Reload | None:
        """One poll: the Reload if a file changed (settled), else None."""
        changes = await asyncio.to_thread(self._read_changes, settle=True)
        return self._report(self._apply(changes)) if changes else None

    def _report(self, reload: Reload) -> Reload:
        self._on_reload(reload)
        return reload

    # --- in the worker thread: stat and read, touch nothing shared but `_last_poll` ---------

    def _read_changes(self, *, settle: bool) -> dict[Path, Change]:
        stamps = {path: _stamp(path) for path in find_files(self._paths)}
        current = {path: stamp for path, stamp in stamps.items() if stamp is not None}
        changes: dict[Path, Change] = dict.fromkeys(self._files.keys() - current.keys())
        for path, stamp in current.items():
            known = self._files.get(path)
            if known is not None and known.stamp == stamp:
                continue
            if settle and self._last_poll.get(path) != stamp:
                continue  # changed since the last poll: may be half-written, read it next time
            changes[path] = (stamp, load_file(path, parse=self._parse))
        self._last_poll = current
        return changes

    # --- on the event loop ------------------------------------------------------------------

    def _apply(self, changes: dict[Path, Change]) -> Reload:
        problems: list[Problem] = []
        kept: list[tuple[str, int]] = []
        for path, change in changes.items():
            if change is None:
                del self._files[path]
                continue
            stamp, load = change
            previous = self._files.get(path)
            problems.extend(load.problems)
            if load.ok or previous is None:
                self._files[path] = _Watched(stamp, load.sources)
            else:
                self._files[path] = _Watched(stamp, previous.accepted)
                kept.append((load.path, len(previous.accepted)))
        assembly = self._assemble()
        reload = self._diff(assembly, problems=problems, kept=kept)
        self._scheduled = assembly.scheduled
        self._registry.replace_all(entry.source.obj for entry in self._scheduled.values())
        return reload

    def _assemble(self) -> _Assembly:
        """Every accepted source, first definition of a namespace/name winning, resolved."""
        assembly = _Assembly()
        first: dict[SourceKey, LocalSource] = {}
        for path in sorted(self._files):
            for source in self._files[path].accepted:
                key = source.spec.key
                if key in first:
                    reason = f"also defined in {first[key].origin}; this one is ignored"
                    assembly.skipped.setdefault(key, []).append(Skipped(source, reason))
                    continue
                first[key] = source
                target = self._resolver.resolve(source.spec)
                if isinstance(target, Unresolved):
                    assembly.skipped.setdefault(key, []).append(Skipped(source, target.message))
                else:
                    assembly.scheduled[key] = Scheduled(source, target)
        return assembly

    def _diff(
        self, assembly: _Assembly, *, problems: list[Problem], kept: list[tuple[str, int]]
    ) -> Reload:
        old, new = self._scheduled, assembly.scheduled
        skipped = [entry for entries in assembly.skipped.values() for entry in entries]
        news = [entry for entry in skipped if _skip_id(entry) not in self._skip_reasons]
        self._skip_reasons = {_skip_id(entry) for entry in skipped}
        return Reload(
            problems=tuple(problems),
            kept=tuple(kept),
            skipped=tuple(news),
            added=tuple(entry for key, entry in new.items() if key not in old),
            changed=tuple(
                entry
                for key, entry in new.items()
                if key in old and old[key].source.version != entry.source.version
            ),
            removed=tuple(key for key in old if key not in new),
            files=len(self._files),
        )


def _skip_id(entry: Skipped) -> tuple[SourceKey, str, str]:
    return (entry.source.spec.key, str(entry.source.origin), entry.reason)


def _stamp(path: Path) -> Stamp | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
