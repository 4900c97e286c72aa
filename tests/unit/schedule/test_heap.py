"""The heap of schedule groups: grouping, due ticks, updates that must not lose a tick."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mtping.schedule import parse_schedule
from mtping.schedule.heap import ScheduleHeap

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
EVERY_MINUTE = parse_schedule("* * * * *")
EVERY_2S = parse_schedule("*/2 * * * * *")
CATCH_UP = timedelta(seconds=10)


def heap() -> ScheduleHeap[str, str]:
    return ScheduleHeap(watermark=T0)


def test_sources_with_one_schedule_share_one_group() -> None:
    schedules = heap()
    for name in ("a", "b", "c"):
        schedules.upsert(name, EVERY_MINUTE, f"payload-{name}", now=T0)
    schedules.upsert("d", EVERY_2S, "payload-d", now=T0)

    assert len(schedules) == 4
    assert schedules.group_count == 2


def test_pop_due_returns_each_group_tick_with_its_members() -> None:
    schedules = heap()
    schedules.upsert("a", EVERY_MINUTE, "A", now=T0)
    schedules.upsert("b", EVERY_MINUTE, "B", now=T0)

    result = schedules.pop_due(T0 + timedelta(minutes=1), catch_up=CATCH_UP)

    assert [(t.instant, sorted(t.payloads)) for t in result.ticks] == [
        (T0 + timedelta(minutes=1), ["A", "B"])
    ]
    assert result.ticks[0].next_instant == T0 + timedelta(minutes=2)
    assert schedules.next_fire() == T0 + timedelta(minutes=2)


def test_nothing_is_due_before_its_instant() -> None:
    schedules = heap()
    schedules.upsert("a", EVERY_MINUTE, "A", now=T0)

    result = schedules.pop_due(T0 + timedelta(seconds=59.999), catch_up=CATCH_UP)

    assert result.ticks == []
    assert schedules.next_fire() == T0 + timedelta(minutes=1)


def test_payload_only_update_keeps_the_pending_tick() -> None:
    schedules = heap()
    schedules.upsert("a", EVERY_MINUTE, "old", now=T0)

    rescheduled = schedules.upsert("a", EVERY_MINUTE, "new", now=T0 + timedelta(seconds=59))
    result = schedules.pop_due(T0 + timedelta(minutes=1), catch_up=CATCH_UP)

    assert rescheduled is False
    assert [t.payloads for t in result.ticks] == [("new",)]


def test_schedule_change_does_not_drop_a_tick_due_since_the_last_pop() -> None:
    schedules = heap()
    schedules.upsert("a", EVERY_MINUTE, "A", now=T0)
    schedules.pop_due(T0 + timedelta(seconds=1), catch_up=CATCH_UP)  # watermark 12:00:01
    # Moved to a 2-second schedule at 12:00:04.5: its 12:00:02 and 12:00:04 ticks fell due
    # between the last pop and now, under the new schedule, and must still fire.
    schedules.upsert("a", EVERY_2S, "A2", now=T0 + timedelta(seconds=4.5))

    result = schedules.pop_due(T0 + timedelta(seconds=4.5), catch_up=CATCH_UP)

    assert [t.instant for t in result.ticks] == [
        T0 + timedelta(seconds=2),
        T0 + timedelta(seconds=4),
    ]
    assert schedules.group_count == 1


def test_new_source_starts_from_now_not_from_the_past() -> None:
    schedules = heap()
    schedules.upsert("a", EVERY_2S, "A", now=T0 + timedelta(seconds=5))

    assert schedules.next_fire() == T0 + timedelta(seconds=6)


def test_removed_source_is_not_fired_and_its_empty_group_is_gone() -> None:
    schedules = heap()
    schedules.upsert("a", EVERY_MINUTE, "A", now=T0)
    schedules.upsert("b", EVERY_2S, "B", now=T0)

    assert schedules.remove("a") is True
    assert schedules.remove("a") is False
    result = schedules.pop_due(T0 + timedelta(minutes=1), catch_up=timedelta(minutes=2))

    assert {p for t in result.ticks for p in t.payloads} == {"B"}
    assert schedules.group_count == 1


def test_recreated_group_fires_once_per_instant() -> None:
    schedules = heap()
    schedules.upsert("a", EVERY_MINUTE, "A", now=T0)
    schedules.remove("a")
    schedules.upsert("a", EVERY_MINUTE, "A", now=T0)  # same key, same next instant

    result = schedules.pop_due(T0 + timedelta(minutes=1), catch_up=CATCH_UP)

    assert len(result.ticks) == 1


def test_ticks_older_than_the_catch_up_window_are_skipped_and_counted() -> None:
    schedules = heap()
    schedules.upsert("a", EVERY_2S, "A", now=T0)
    schedules.upsert("b", EVERY_2S, "B", now=T0)

    # The clock jumps 20 s: ticks at 2..8 s are older than 10 s, 10..20 s still fire.
    result = schedules.pop_due(T0 + timedelta(seconds=20), catch_up=CATCH_UP)

    assert [t.instant.second for t in result.ticks] == [10, 12, 14, 16, 18, 20]
    assert result.skipped == 2 * 4
    assert schedules.next_fire() == T0 + timedelta(seconds=22)
