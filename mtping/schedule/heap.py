"""The heap of schedule groups: which sources fire next, and when. Pure: no asyncio, no I/O.

Sources that share a (schedule, timezone) key share one group, so one cron computation serves
all of them: 100k sources on `* * * * *` cost one `next_after` per minute, not 100k. The heap
holds one entry per group; entries of groups that changed or emptied are left in place and
skipped when popped (lazy deletion), so every operation is O(log groups).

The heap never drops a due tick because of an update: a member whose payload changes keeps its
place, and a member whose schedule changes starts its new group from the heap's watermark (the
last instant it was asked about), not from "now", so a tick that fell due between two pops
still fires.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from mtping.schedule.cron import CronSchedule

MemberKey = TypeVar("MemberKey", bound=Hashable)
Payload = TypeVar("Payload")
GroupKey = tuple[str, str]


@dataclass(eq=False, slots=True)
class _Group(Generic[MemberKey, Payload]):
    schedule: CronSchedule
    next_fire: datetime
    members: dict[MemberKey, Payload] = field(default_factory=dict)
    # Sequence number of this group's one live heap entry; any other entry for it is stale.
    live_entry: int = 0


@dataclass(frozen=True, slots=True)
class DueTick(Generic[Payload]):
    """One scheduled instant of one group, with the payloads of its members at pop time."""

    instant: datetime
    payloads: tuple[Payload, ...]
    next_instant: datetime
    """The group's following instant: an event of this tick is stale once it comes."""


@dataclass(frozen=True, slots=True)
class PopResult(Generic[Payload]):
    ticks: list[DueTick[Payload]]
    # Instants older than the catch-up window (wall clock jumped, or the process was stopped):
    # counted per member, not fired.
    skipped: int


class ScheduleHeap(Generic[MemberKey, Payload]):
    """Members grouped by schedule key; pops every group tick due by a given instant."""

    def __init__(self, *, watermark: datetime) -> None:
        self._groups: dict[GroupKey, _Group[MemberKey, Payload]] = {}
        self._group_of: dict[MemberKey, GroupKey] = {}
        self._heap: list[tuple[datetime, int, GroupKey]] = []
        self._sequence = 0
        self._watermark = watermark

    def __len__(self) -> int:
        return len(self._group_of)

    @property
    def group_count(self) -> int:
        return len(self._groups)

    def upsert(
        self, member: MemberKey, schedule: CronSchedule, payload: Payload, *, now: datetime
    ) -> bool:
        """Add or update a member; returns True when its schedule changed (or it is new)."""
        old_key = self._group_of.get(member)
        if old_key == schedule.key:
            self._groups[schedule.key].members[member] = payload
            return False
        # A new member starts from now; a moved member from the watermark, so a tick of its new
        # schedule that fell due since the last pop is not lost.
        start = now if old_key is None else min(now, self._watermark)
        if old_key is not None:
            self._discard(member, old_key)
        group = self._groups.get(schedule.key) or self._new_group(schedule, start)
        group.members[member] = payload
        self._group_of[member] = schedule.key
        return True

    def remove(self, member: MemberKey) -> bool:
        key = self._group_of.pop(member, None)
        if key is None:
            return False
        self._discard(member, key)
        return True

    def next_fire(self) -> datetime | None:
        """The earliest pending instant, or None when there is nothing to fire."""
        self._drop_stale_top()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: datetime, *, catch_up: timedelta) -> PopResult[Payload]:
        """Every tick due at or before `now`; ticks older than `now - catch_up` are skipped."""
        ticks: list[DueTick[Payload]] = []
        skipped = 0
        oldest_fired = now - catch_up
        while (top := self.next_fire()) is not None and top <= now:
            _, _, key = heapq.heappop(self._heap)
            group = self._groups[key]
            instant = group.next_fire
            following = group.schedule.next_after(instant)
            if instant >= oldest_fired:
                ticks.append(DueTick(instant, tuple(group.members.values()), following))
            else:
                skipped += len(group.members)
            self._push(key, group, following)
        self._watermark = max(self._watermark, now)
        return PopResult(ticks, skipped)

    def _new_group(self, schedule: CronSchedule, start: datetime) -> _Group[MemberKey, Payload]:
        group: _Group[MemberKey, Payload] = _Group(schedule, schedule.next_after(start))
        self._groups[schedule.key] = group
        self._push(schedule.key, group, group.next_fire)
        return group

    def _push(self, key: GroupKey, group: _Group[MemberKey, Payload], instant: datetime) -> None:
        group.next_fire = instant
        self._sequence += 1
        group.live_entry = self._sequence
        heapq.heappush(self._heap, (instant, self._sequence, key))

    def _discard(self, member: MemberKey, key: GroupKey) -> None:
        """Take `member` out of its group (the caller keeps the index); drop an emptied group."""
        group = self._groups[key]
        del group.members[member]
        if not group.members:
            del self._groups[key]

    def _drop_stale_top(self) -> None:
        """Pop entries whose group is gone, or was re-pushed or re-created since."""
        while self._heap:
            _, sequence, key = self._heap[0]
            group = self._groups.get(key)
            if group is not None and group.live_entry == sequence:
                return
            heapq.heappop(self._heap)
