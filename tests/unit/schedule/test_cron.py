"""Cron schedules: grammar (Knative/robfig), zones, error messages and the DST rule.

Pure tests: every instant is injected, nothing sleeps. DST expectations come from 2026's
transitions, read off the zone database (see TRANSITIONS); a brute-force reference, written
from the rule in the module docstring without croniter, checks next_after around each one.
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from mtping.schedule import (
    CronSchedule,
    ScheduleError,
    TimezoneError,
    parse_schedule,
    validate_timezone,
)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def following(schedule: CronSchedule, after: datetime, count: int) -> list[datetime]:
    """The next `count` fire instants after `after`, each computed from the previous one."""
    fires = []
    for _ in range(count):
        after = schedule.next_after(after)
        fires.append(after)
    return fires


def fires_between(schedule: CronSchedule, start: datetime, end: datetime) -> list[datetime]:
    fires = []
    instant = schedule.next_after(start)
    while instant <= end:
        fires.append(instant)
        instant = schedule.next_after(instant)
    return fires


# ---------------------------------------------------------------------------------------------
# Grammar


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("* * * * *", utc(2026, 1, 1, 0, 0, 30), [utc(2026, 1, 1, 0, 1), utc(2026, 1, 1, 0, 2)]),
        ("* * * * *", utc(2026, 1, 1, 0, 1), [utc(2026, 1, 1, 0, 2), utc(2026, 1, 1, 0, 3)]),
        ("", utc(2026, 1, 1, 0, 0, 30), [utc(2026, 1, 1, 0, 1), utc(2026, 1, 1, 0, 2)]),
        ("*/20 * * * *", utc(2026, 1, 1, 0, 5), [utc(2026, 1, 1, 0, 20), utc(2026, 1, 1, 0, 40)]),
        ("5/20 * * * *", utc(2026, 1, 1), [utc(2026, 1, 1, 0, 5), utc(2026, 1, 1, 0, 25)]),
        ("0 9-17/4 * * *", utc(2026, 1, 1), [utc(2026, 1, 1, 9), utc(2026, 1, 1, 13)]),
        ("0 0 1,15 * *", utc(2026, 1, 2), [utc(2026, 1, 15), utc(2026, 2, 1)]),
        ("1,,2 * * * *", utc(2026, 1, 1), [utc(2026, 1, 1, 0, 1), utc(2026, 1, 1, 0, 2)]),
        # six fields: seconds come first (robfig's SecondOptional), not last as in croniter
        ("*/10 * * * * *", utc(2026, 1, 1), [utc(2026, 1, 1, 0, 0, 10), utc(2026, 1, 1, 0, 0, 20)]),
        (
            "30 0 12 * * *",
            utc(2026, 1, 1),
            [utc(2026, 1, 1, 12, 0, 30), utc(2026, 1, 2, 12, 0, 30)],
        ),
        ("0 * * * * *", utc(2026, 1, 1, 0, 0, 1), [utc(2026, 1, 1, 0, 1), utc(2026, 1, 1, 0, 2)]),
        # descriptors
        ("@yearly", utc(2026, 3, 1), [utc(2027, 1, 1), utc(2028, 1, 1)]),
        ("@annually", utc(2026, 3, 1), [utc(2027, 1, 1), utc(2028, 1, 1)]),
        ("@monthly", utc(2026, 3, 1), [utc(2026, 4, 1), utc(2026, 5, 1)]),
        ("@weekly", utc(2026, 3, 4), [utc(2026, 3, 8), utc(2026, 3, 15)]),  # Sundays
        ("@daily", utc(2026, 3, 1, 12), [utc(2026, 3, 2), utc(2026, 3, 3)]),
        ("@midnight", utc(2026, 3, 1, 12), [utc(2026, 3, 2), utc(2026, 3, 3)]),
        ("@hourly", utc(2026, 3, 1, 12, 1), [utc(2026, 3, 1, 13), utc(2026, 3, 1, 14)]),
        ("@Daily", utc(2026, 3, 1, 12), [utc(2026, 3, 2), utc(2026, 3, 3)]),
        # names, case-insensitive, in lists and ranges
        ("0 0 1 jan,JUL *", utc(2026, 2, 1), [utc(2026, 7, 1), utc(2027, 1, 1)]),
        ("0 12 * * sat,Sun", utc(2026, 3, 2), [utc(2026, 3, 7, 12), utc(2026, 3, 8, 12)]),
        ("0 12 * * MON-wed", utc(2026, 3, 4, 13), [utc(2026, 3, 9, 12), utc(2026, 3, 10, 12)]),
        ("0 0 1 Oct-Dec/2 *", utc(2026, 1, 1), [utc(2026, 10, 1), utc(2026, 12, 1)]),
        # `?` is `*`
        ("0 0 ? * MON", utc(2026, 3, 3), [utc(2026, 3, 9), utc(2026, 3, 16)]),
        ("0 0 * * 0", utc(2026, 3, 3), [utc(2026, 3, 8), utc(2026, 3, 15)]),
    ],
)
def test_next_fire_times_in_utc(expression: str, after: datetime, expected: list[datetime]) -> None:
    assert following(parse_schedule(expression), after, len(expected)) == expected


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # both day fields restricted: either may match (13th, or any Friday)
        ("0 0 13 * FRI", utc(2026, 2, 1), [utc(2026, 2, 6), utc(2026, 2, 13), utc(2026, 2, 20)]),
        ("0 0 13 * FRI", utc(2026, 4, 11), [utc(2026, 4, 13), utc(2026, 4, 17), utc(2026, 4, 24)]),
        ("0 0 1 * MON", utc(2026, 5, 26), [utc(2026, 6, 1), utc(2026, 6, 8), utc(2026, 6, 15)]),
        ("0 0 */10 * MON", utc(2026, 6, 2), [utc(2026, 6, 8), utc(2026, 6, 11), utc(2026, 6, 15)]),
        # OR with a full but starless side matches every day, as in robfig
        ("0 0 1-31 * MON", utc(2026, 6, 2), [utc(2026, 6, 3), utc(2026, 6, 4), utc(2026, 6, 5)]),
        ("0 0 13 * 0-6", utc(2026, 6, 2), [utc(2026, 6, 3), utc(2026, 6, 4), utc(2026, 6, 5)]),
        # a star (also `?` and `*/1`) on one side: the other side alone decides
        ("0 0 * * MON", utc(2026, 6, 2), [utc(2026, 6, 8), utc(2026, 6, 15), utc(2026, 6, 22)]),
        ("0 0 */1 * MON", utc(2026, 6, 2), [utc(2026, 6, 8), utc(2026, 6, 15), utc(2026, 6, 22)]),
        ("0 0 13 * ?", utc(2026, 6, 2), [utc(2026, 6, 13), utc(2026, 7, 13), utc(2026, 8, 13)]),
        # the month field still restricts both sides
        (
            "0 0 13 2 FRI",
            utc(2026, 2, 25),
            [utc(2026, 2, 27), utc(2027, 2, 5), utc(2027, 2, 12), utc(2027, 2, 13)],
        ),
    ],
)
def test_day_of_month_and_day_of_week(
    expression: str, after: datetime, expected: list[datetime]
) -> None:
    assert following(parse_schedule(expression), after, len(expected)) == expected


@pytest.mark.parametrize(
    ("expression", "shown", "has_seconds"),
    [
        ("", "* * * * *", False),
        ("  */5   *  * * *  ", "*/5 * * * *", False),
        ("@Daily", "@daily", False),
        ("CRON_TZ=Europe/Berlin 0 8 * * *", "0 8 * * *", False),
        ("*/10 * * * * *", "*/10 * * * * *", True),
        ("0 * * * * *", "0 * * * * *", True),
    ],
)
def test_expression_is_normalized(expression: str, shown: str, has_seconds: bool) -> None:
    schedule = parse_schedule(expression)
    assert schedule.expression == shown
    assert schedule.has_seconds() is has_seconds


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 0 ? * *"),
        ("* * * * *", "0 * * * * *"),
        ("*/15 * * * *", "0,15,30,45 * * * *"),
        ("0 0 * * mon-fri", "0 0 ? * 1-5"),
        ("0 0 1-31 * MON", "0 0 * * *"),
    ],
)
def test_equivalent_expressions_share_a_key(left: str, right: str) -> None:
    assert parse_schedule(left).key == parse_schedule(right).key


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (("0 0 * * *", "UTC"), ("0 0 * * *", "Europe/Berlin")),
        (("0 0 13 * *", "UTC"), ("0 0 13 * FRI", "UTC")),
        (("0 0 * * MON", "UTC"), ("0 0 1 * MON", "UTC")),
        (("* * * * *", "UTC"), ("* * * * * *", "UTC")),
    ],
)
def test_different_schedules_have_different_keys(
    left: tuple[str, str], right: tuple[str, str]
) -> None:
    first = parse_schedule(left[0], timezone=left[1])
    second = parse_schedule(right[0], timezone=right[1])
    assert first.key != second.key


def test_schedule_is_a_hashable_value() -> None:
    schedule = parse_schedule("0 0 * * *", timezone="Europe/Berlin")
    assert schedule == parse_schedule("0 0 * * *", timezone="Europe/Berlin")
    assert len({schedule, parse_schedule("0 0 * * *", timezone="Europe/Berlin")}) == 1
    assert "Europe/Berlin" in repr(schedule)


# ---------------------------------------------------------------------------------------------
# Zones


@pytest.mark.parametrize(
    ("expression", "timezone", "default", "zone"),
    [
        ("0 8 * * *", None, "UTC", "UTC"),
        ("0 8 * * *", "", "UTC", "UTC"),
        ("0 8 * * *", None, "Asia/Tokyo", "Asia/Tokyo"),
        ("0 8 * * *", "Europe/Berlin", "Asia/Tokyo", "Europe/Berlin"),
        ("CRON_TZ=America/New_York 0 8 * * *", None, "Asia/Tokyo", "America/New_York"),
        ("TZ=America/New_York 0 8 * * *", None, "UTC", "America/New_York"),
        ("CRON_TZ=America/New_York 0 8 * * *", "America/New_York", "UTC", "America/New_York"),
        ("CRON_TZ=Asia/Kolkata @daily", None, "UTC", "Asia/Kolkata"),
    ],
)
def test_zone_comes_from_prefix_then_argument_then_default(
    expression: str, timezone: str | None, default: str, zone: str
) -> None:
    schedule = parse_schedule(expression, timezone=timezone, default_timezone=default)
    assert schedule.timezone == zone
    assert schedule.key[1] == zone


@pytest.mark.parametrize(
    ("expression", "timezone", "after", "expected"),
    [
        ("0 8 * * *", "Europe/Berlin", utc(2026, 1, 5), utc(2026, 1, 5, 7)),
        ("0 8 * * *", "Europe/Berlin", utc(2026, 7, 5), utc(2026, 7, 5, 6)),
        ("CRON_TZ=Asia/Kolkata 30 9 * * *", None, utc(2026, 1, 5), utc(2026, 1, 5, 4)),
        ("TZ=America/New_York 0 0 * * *", None, utc(2026, 1, 5), utc(2026, 1, 5, 5)),
        ("0 0 * * *", "Etc/GMT-8", utc(2026, 1, 5), utc(2026, 1, 5, 16)),
    ],
)
def test_schedule_runs_on_the_zone_wall_clock(
    expression: str, timezone: str | None, after: datetime, expected: datetime
) -> None:
    assert parse_schedule(expression, timezone=timezone).next_after(after) == expected


def test_next_after_accepts_any_aware_instant_and_answers_in_utc() -> None:
    schedule = parse_schedule("0 * * * *")
    plus_five = datetime(2026, 1, 1, 5, 30, tzinfo=ZoneInfo("Asia/Karachi"))  # 00:30Z
    fire = schedule.next_after(plus_five)
    assert fire == utc(2026, 1, 1, 1)
    assert fire.tzinfo is UTC


def test_next_after_refuses_a_naive_instant() -> None:
    with pytest.raises(ValueError, match="aware"):
        parse_schedule("* * * * *").next_after(datetime(2026, 1, 1))  # noqa: DTZ001


def test_prefix_and_a_different_timezone_argument_are_refused() -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule("CRON_TZ=Europe/Paris 0 8 * * *", timezone="Europe/Berlin")
    assert "Europe/Paris" in str(caught.value)
    assert "Europe/Berlin" in str(caught.value)
    assert not isinstance(caught.value, TimezoneError)


@pytest.mark.parametrize("name", ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "EST"])
def test_valid_zone_names_are_returned(name: str) -> None:
    assert validate_timezone(name) == name


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("UTC+8", ["'Etc/GMT-8'", "flipped", "UTC+8"]),
        ("GMT-5", ["'Etc/GMT+5'", "flipped"]),
        ("utc+08:00", ["'Etc/GMT-8'"]),
        ("UTC+0", ["'UTC'"]),
        ("UTC+5:30", ["Region/City"]),
        ("CST", ["ambiguous", "'America/Chicago'", "'Asia/Shanghai'"]),
        ("ist", ["'Asia/Kolkata'", "'Europe/Dublin'"]),
        ("PST", ["'America/Los_Angeles'"]),
        ("europe/paris", ["'Europe/Paris'", "case-sensitive"]),
        ("AMERICA/NEW_YORK", ["'America/New_York'"]),
        ("America/New York", ["'America/New_York'"]),
        (" Europe/Paris", ["'Europe/Paris'"]),
        ("Europe/Berln", ["'Europe/Berlin'"]),
        ("", ["empty"]),
        ("Nowhere/Atall", ["unknown time zone 'Nowhere/Atall'", "IANA"]),
        ("Europe", ["unknown time zone 'Europe'"]),
        ("../../etc/passwd", ["unknown time zone"]),
        ("/etc/localtime", ["unknown time zone"]),
    ],
)
def test_unknown_zone_names_get_a_suggestion(name: str, fragments: list[str]) -> None:
    with pytest.raises(TimezoneError) as caught:
        validate_timezone(name)
    for fragment in fragments:
        assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("expression", "timezone", "default"),
    [
        ("0 8 * * *", "UTC+8", "UTC"),
        ("CRON_TZ=CST 0 8 * * *", None, "UTC"),
        ("CRON_TZ= 0 8 * * *", None, "UTC"),
        ("0 8 * * *", None, "europe/paris"),
    ],
)
def test_bad_zones_in_a_schedule_raise_timezone_error(
    expression: str, timezone: str | None, default: str
) -> None:
    with pytest.raises(TimezoneError):
        parse_schedule(expression, timezone=timezone, default_timezone=default)


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("@every 5m", "@every is not supported; use a cron expression such as '*/5 * * * *'"),
        ("CRON_TZ=UTC @every 1h", "@every is not supported"),
        ("@fortnightly", "unknown descriptor '@fortnightly'"),
        ("@daily 5", "unknown descriptor"),
        ("* * * * * * *", "found 7 (a year field is not supported)"),
        ("* * * *", "expected 5 fields"),
        ("61 * * * *", "minute field '61' out of range 0-59"),
        ("60 * * * * *", "second field '60' out of range 0-59"),
        ("* 24 * * *", "hour field '24' out of range 0-23"),
        ("* * 0 * *", "day-of-month field '0' out of range 1-31"),
        ("* * 32 * *", "day-of-month field '32' out of range 1-31"),
        ("* * * 13 *", "month field '13' out of range 1-12"),
        ("* * * 0 *", "month field '0' out of range 1-12"),
        ("* * * * 7", "day-of-week field '7' out of range 0-6 (use 0 or SUN for Sunday)"),
        ("* * * * 1-7", "day-of-week field '1-7' out of range 0-6"),
        ("50-70 * * * *", "minute field '50-70' out of range 0-59"),
        ("5-2 * * * *", "minute field '5-2': range start 5 is after its end 2"),
        ("* * * * FRI-MON", "range start 5 is after its end 1"),
        ("*/0 * * * *", "minute field '*/0': the step must be a positive number"),
        ("*/x * * * *", "the step must be a positive number"),
        ("1/2/3 * * * *", "more than one '/'"),
        ("1-2-3 * * * *", "more than one '-'"),
        ("x * * * *", "minute field 'x': 'x' is not a number"),
        ("-5 * * * *", "minute field '-5': '' is not a number"),
        ("*-5 * * * *", "'*' is not a number"),
        ("* * * FOO *", "'FOO' is not a number or a month name (JAN-DEC)"),
        ("* * * * monday", "'monday' is not a number or a day name (SUN-SAT)"),
        ("* JAN * * *", "hour field 'JAN': 'JAN' is not a number"),
        ("* * L * *", "'#', 'L', 'W' and 'H' cron extensions are not supported"),
        ("* * 15W * *", "extensions are not supported"),
        ("* * * * 5#3", "extensions are not supported"),
        ("* * * * 5L", "extensions are not supported"),
        ("H * * * *", "extensions are not supported"),
        ("H(0-29) * * * *", "extensions are not supported"),
        ("hello * * * *", "'hello' is not a number"),
        (", * * * *", "minute field ',' lists no values"),
        ("0 0 30 2 *", "day-of-month 30 never occurs in month 2"),
        ("0 0 31 4,6 *", "never fire"),
        ("CRON_TZ=UTC", "nothing follows the time zone prefix"),
    ],
)
def test_invalid_expressions_say_what_is_wrong(expression: str, fragment: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(expression)
    message = str(caught.value)
    assert fragment in message
    assert "croniter" not in message.lower()


@pytest.mark.parametrize(
    "expression", ["0 0 29 2 *", "0 0 31 * *", "0 0 30 2 MON", "0 0 30 * *", "0 0 31 1-3 *"]
)
def test_days_that_exist_somewhere_are_accepted(expression: str) -> None:
    assert parse_schedule(expression).next_after(utc(2026, 1, 1)) > utc(2026, 1, 1)


def test_leap_day_schedule_waits_for_a_leap_year() -> None:
    assert parse_schedule("0 0 29 2 *").next_after(utc(2026, 1, 1)) == utc(2028, 2, 29)


def test_errors_form_one_hierarchy() -> None:
    assert issubclass(TimezoneError, ScheduleError)
    assert issubclass(ScheduleError, ValueError)


# ---------------------------------------------------------------------------------------------
# DST: fixed wall times


@pytest.mark.parametrize(
    ("zone", "expression", "after", "expected"),
    [
        # Europe/Berlin: 02:00 CET -> 03:00 CEST on 03-29; 03:00 CEST -> 02:00 CET on 10-25
        ("Europe/Berlin", "30 2 * * *", utc(2026, 3, 28), [
            utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30)]),
        ("Europe/Berlin", "*/20 2 * * *", utc(2026, 3, 29), [
            utc(2026, 3, 29, 1), utc(2026, 3, 30, 0), utc(2026, 3, 30, 0, 20)]),
        ("Europe/Berlin", "30 2 * * *", utc(2026, 10, 24), [
            utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]),
        ("Europe/Berlin", "0 2,3 * * *", utc(2026, 3, 28, 12), [
            utc(2026, 3, 29, 1), utc(2026, 3, 30, 0), utc(2026, 3, 30, 1)]),
        # America/New_York: 02:00 EST -> 03:00 EDT on 03-08; 02:00 EDT -> 01:00 EST on 11-01
        ("America/New_York", "30 2 * * *", utc(2026, 3, 7), [
            utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7), utc(2026, 3, 9, 6, 30)]),
        ("America/New_York", "*/15 2 * * *", utc(2026, 3, 8, 6), [
            utc(2026, 3, 8, 7), utc(2026, 3, 9, 6), utc(2026, 3, 9, 6, 15)]),
        ("America/New_York", "30 1 * * *", utc(2026, 10, 31), [
            utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]),
        ("America/New_York", "0,30 1 * * *", utc(2026, 11, 1, 5, 10), [
            utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6), utc(2026, 11, 2, 6, 30)]),
        ("America/New_York", "30 1 * * *", utc(2026, 11, 1, 6, 10), [  # from 01:10 EST
            utc(2026, 11, 2, 6, 30)]),
        # Australia/Lord_Howe: 02:00 +10:30 -> 02:30 +11 on 10-04; 02:00 +11 -> 01:30 +10:30 04-05
        ("Australia/Lord_Howe", "15 2 * * *", utc(2026, 10, 2), [
            utc(2026, 10, 2, 15, 45), utc(2026, 10, 3, 15, 30), utc(2026, 10, 4, 15, 15)]),
        ("Australia/Lord_Howe", "*/15 2 * * *", utc(2026, 10, 3, 15), [
            utc(2026, 10, 3, 15, 30), utc(2026, 10, 3, 15, 45), utc(2026, 10, 4, 15)]),
        ("Australia/Lord_Howe", "45 1 * * *", utc(2026, 4, 3), [
            utc(2026, 4, 3, 14, 45), utc(2026, 4, 4, 14, 45), utc(2026, 4, 5, 15, 15)]),
        # America/Santiago changes at midnight: 00:00 -04 -> 01:00 -03 on 09-06,
        # 24:00 -03 -> 23:00 -04 on 04-04
        ("America/Santiago", "@daily", utc(2026, 9, 4, 12), [
            utc(2026, 9, 5, 4), utc(2026, 9, 6, 4), utc(2026, 9, 7, 3)]),
        ("America/Santiago", "30 23 * * *", utc(2026, 4, 3, 3), [
            utc(2026, 4, 4, 2, 30), utc(2026, 4, 5, 2, 30), utc(2026, 4, 6, 3, 30)]),
        # Australia/Sydney: 02:00 +10 -> 03:00 +11 on 10-04; 03:00 +11 -> 02:00 +10 on 04-05
        ("Australia/Sydney", "30 2 * * *", utc(2026, 10, 2), [
            utc(2026, 10, 2, 16, 30), utc(2026, 10, 3, 16), utc(2026, 10, 4, 15, 30)]),
        ("Australia/Sydney", "30 2 * * *", utc(2026, 4, 3), [
            utc(2026, 4, 3, 15, 30), utc(2026, 4, 4, 15, 30), utc(2026, 4, 5, 16, 30)]),
        # six fields: 02:30:15 in the gap collapses onto the jump too
        ("Europe/Berlin", "15 30 2 * * *", utc(2026, 3, 29), [
            utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30, 15)]),
    ],
)  # fmt: skip
def test_fixed_wall_times_across_dst(
    zone: str, expression: str, after: datetime, expected: list[datetime]
) -> None:
    schedule = parse_schedule(expression, timezone=zone)
    assert following(schedule, after, len(expected)) == expected


# ---------------------------------------------------------------------------------------------
# DST: hour-wildcard schedules keep real cadence

TRANSITIONS = {  # 2026 offset changes, UTC
    "Europe/Berlin": (utc(2026, 3, 29, 1), utc(2026, 10, 25, 1)),
    "America/New_York": (utc(2026, 3, 8, 7), utc(2026, 11, 1, 6)),
    "Australia/Lord_Howe": (utc(2026, 4, 4, 15), utc(2026, 10, 3, 15, 30)),
    "America/Santiago": (utc(2026, 4, 5, 3), utc(2026, 9, 6, 4)),
    "Australia/Sydney": (utc(2026, 4, 4, 16), utc(2026, 10, 3, 16)),
}
CADENCE_CASES = [
    (zone, transition, expression, step)
    for zone, transitions in TRANSITIONS.items()
    for transition in transitions
    for expression, step in [
        ("*/15 * * * *", timedelta(minutes=15)),
        ("*/30 * * * * *", timedelta(seconds=30)),
        ("0,30 * * * *", timedelta(minutes=30)),
    ]
]


@pytest.mark.parametrize(("zone", "transition", "expression", "step"), CADENCE_CASES)
def test_hour_wildcard_keeps_real_cadence_across_transitions(
    zone: str, transition: datetime, expression: str, step: timedelta
) -> None:
    schedule = parse_schedule(expression, timezone=zone)
    start, end = transition - timedelta(hours=3), transition + timedelta(hours=3)
    fires = fires_between(schedule, start, end)
    assert fires[0] == start + step
    assert fires[-1] == end
    assert {later - earlier for earlier, later in itertools.pairwise(fires)} == {step}
    assert transition in fires


def test_repeated_hour_fires_at_both_occurrences() -> None:
    zone = ZoneInfo("America/New_York")
    schedule = parse_schedule("*/15 * * * *", timezone="America/New_York")
    fires = fires_between(schedule, utc(2026, 11, 1, 4), utc(2026, 11, 1, 8))
    walls = [fire.astimezone(zone).strftime("%H:%M%z") for fire in fires]
    assert walls[3:12] == [
        "01:00-0400", "01:15-0400", "01:30-0400", "01:45-0400",
        "01:00-0500", "01:15-0500", "01:30-0500", "01:45-0500", "02:00-0500",
    ]  # fmt: skip


def test_nonexistent_wall_times_are_absent_not_collapsed() -> None:
    zone = ZoneInfo("Europe/Berlin")
    schedule = parse_schedule("*/15 * * * *", timezone="Europe/Berlin")
    fires = fires_between(schedule, utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 30))
    walls = [fire.astimezone(zone).strftime("%H:%M") for fire in fires]
    assert walls == ["01:45", "03:00", "03:15", "03:30"]


def test_hourly_in_a_half_hour_shift_follows_real_time() -> None:
    # Lord Howe's gap is 02:00-02:30: 02:00 does not exist, 03:00 is 90 real minutes after 01:00.
    schedule = parse_schedule("@hourly", timezone="Australia/Lord_Howe")
    fires = fires_between(schedule, utc(2026, 10, 3, 14), utc(2026, 10, 3, 17))
    assert fires == [utc(2026, 10, 3, 14, 30), utc(2026, 10, 3, 16), utc(2026, 10, 3, 17)]


# ---------------------------------------------------------------------------------------------
# DST: next_after from any instant agrees with a brute-force reference of the rule


def reference_fires(
    zone_name: str,
    matches: Callable[[datetime], bool],
    *,
    every_hour: bool,
    around: datetime,
    span: timedelta,
    resolution: timedelta,
) -> list[datetime]:
    """Every fire instant for local wall times within `span` of `around`, by the DST rule."""
    zone = ZoneInfo(zone_name)
    start = around.astimezone(zone).replace(tzinfo=None) - span
    walls = [start + resolution * index for index in range(int(2 * span / resolution))]
    fires: set[datetime] = set()
    for index, wall in enumerate(walls):
        if not matches(wall):
            continue
        early, late = _offset(wall, zone, fold=0), _offset(wall, zone, fold=1)
        if early == late:
            fires.add(wall - early)
        elif early > late:  # repeated
            fires.add(wall - early)
            if every_hour:
                fires.add(wall - late)
        elif not every_hour:  # nonexistent: the first wall time that exists marks the jump
            existing = next(w for w in walls[index:] if _exists(w, zone))
            fires.add(existing - _offset(existing, zone, fold=0))
    return sorted(fire.replace(tzinfo=UTC) for fire in fires)


def _offset(wall: datetime, zone: ZoneInfo, *, fold: int) -> timedelta:
    offset = wall.replace(tzinfo=zone, fold=fold).utcoffset()
    assert offset is not None
    return offset


def _exists(wall: datetime, zone: ZoneInfo) -> bool:
    return _offset(wall, zone, fold=0) == _offset(wall, zone, fold=1)


MINUTE, SECOND = timedelta(minutes=1), timedelta(seconds=1)
REFERENCE_SCHEDULES: list[tuple[str, Callable[[datetime], bool], bool, timedelta]] = [
    ("*/15 * * * *", lambda w: w.minute % 15 == 0, True, MINUTE),
    ("7,50 * * * *", lambda w: w.minute in (7, 50), True, MINUTE),
    ("30 2 * * *", lambda w: (w.hour, w.minute) == (2, 30), False, MINUTE),
    ("*/10 1,2 * * *", lambda w: w.hour in (1, 2) and w.minute % 10 == 0, False, MINUTE),
    ("45 1,23 * * *", lambda w: w.hour in (1, 23) and w.minute == 45, False, MINUTE),
    ("0 */2 * * *", lambda w: w.hour % 2 == 0 and w.minute == 0, False, MINUTE),
    ("*/20 * * * * *", lambda w: w.second % 20 == 0, True, SECOND),
]  # fmt: skip
REFERENCE_CASES = [
    pytest.param(zone, transition, *schedule, id=f"{zone}-{transition:%m%d}-{schedule[0]}")
    for zone, transitions in TRANSITIONS.items()
    for transition in transitions
    for schedule in REFERENCE_SCHEDULES
]


@pytest.mark.parametrize(
    ("zone", "transition", "expression", "matches", "every_hour", "resolution"), REFERENCE_CASES
)
def test_next_after_matches_the_reference_from_any_instant(
    zone: str,
    transition: datetime,
    expression: str,
    matches: Callable[[datetime], bool],
    every_hour: bool,
    resolution: timedelta,
) -> None:
    seconds = resolution < MINUTE
    span = timedelta(hours=4) if seconds else timedelta(days=2)
    expected = reference_fires(
        zone, matches, every_hour=every_hour, around=transition, span=span, resolution=resolution
    )
    schedule = parse_schedule(expression, timezone=zone)
    probe_step = timedelta(seconds=37) if seconds else timedelta(minutes=4, seconds=13)
    probes = [transition - span / 2 + probe_step * n for n in range(int(span / probe_step))]
    probes += [fire for fire in expected if transition - span / 2 <= fire < transition + span / 2]
    for probe in probes:
        want = expected[bisect.bisect_right(expected, probe)]
        assert schedule.next_after(probe) == want, f"after {probe}"


# ---------------------------------------------------------------------------------------------
# Properties over a whole year


@pytest.mark.parametrize("zone", [*TRANSITIONS, "UTC"])
@pytest.mark.parametrize(
    "expression", ["@hourly", "30 2 * * *", "30 1 * * *", "*/20 1-3 * * *", "15 */3 * * *"]
)
def test_fire_instants_strictly_increase_over_a_year(zone: str, expression: str) -> None:
    schedule = parse_schedule(expression, timezone=zone)
    instant, end = utc(2026, 1, 1), utc(2027, 1, 1)
    count = 0
    while instant < end:
        fire = schedule.next_after(instant)
        assert fire > instant
        assert schedule.next_after(fire - timedelta(microseconds=1)) == fire
        instant = fire
        count += 1
    assert count >= 365


def test_throughput_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    rates = {}
    for zone in ("UTC", "Europe/Berlin"):
        schedule = parse_schedule("* * * * *", timezone=zone)
        instant, calls = utc(2026, 3, 29), 3000
        began = time.perf_counter()
        for _ in range(calls):
            fire = schedule.next_after(instant)
            assert fire > instant
            instant = fire
        rates[zone] = calls / (time.perf_counter() - began)
    with capsys.disabled():
        print(f"\nnext_after('* * * * *') calls/s: {rates}")
    assert all(rate > 0 for rate in rates.values())
