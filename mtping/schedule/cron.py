"""Cron schedules of PingSources: parse and validate them, and compute the next fire instant.

The grammar is the one Knative accepts (robfig/cron with an optional leading seconds field and
descriptors, `@every` refused); `parse_schedule` is the only parser, used alike by validation
and at run time. This module never reads the clock, sleeps, logs or knows about Kubernetes.
As robfig: day-of-week is 0-6 (7 refused), both day fields restricted means either may match,
`N/step` means `N-max/step`; `L`, `W`, `#`, `H` are refused. Unlike robfig: `*-N` and a
day-of-month no allowed month has (`0 0 30 2 *`, which never fires) are refused; descriptors
are case-insensitive; a CRON_TZ= prefix equal to the `timezone` argument is accepted.

DST rule: a schedule runs on its zone's local wall clock.
- A schedule with a restricted hour field (`30 2 * * *`, `@daily`) names wall-clock times. One
  skipped by a spring-forward jump fires once, at the jump instant (02:30 Europe/Berlin on
  2026-03-29 fires at 03:00 CEST = 01:00Z); one repeated by a fall-back fires once, the first time.
- A schedule whose hour field covers all 24 hours (`*`, `*/1`, `0-23`, `@hourly`) follows real
  time: repeated wall times fire at both occurrences and nonexistent ones are absent, so
  `*/15 * * * *` stays 15 real minutes apart through both transitions.
- Fire instants strictly increase; no instant is ever produced twice.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import CroniterError, croniter

__all__ = ["CronSchedule", "ScheduleError", "TimezoneError", "parse_schedule", "validate_timezone"]

DEFAULT_EXPRESSION: Final = "* * * * *"  # what Knative's defaulting webhook fills in

_DESCRIPTORS: Final = MappingProxyType(
    {
        "@yearly": "0 0 1 1 *",
        "@annually": "0 0 1 1 *",
        "@monthly": "0 0 1 * *",
        "@weekly": "0 0 * * 0",
        "@daily": "0 0 * * *",
        "@midnight": "0 0 * * *",
        "@hourly": "0 * * * *",
    }
)
_ZONE_PREFIX: Final = re.compile(r"(?:CRON_TZ|TZ)=(?P<zone>\S*)\s+(?P<body>.*)")
_EXTENSION: Final = re.compile(r".*#.*|\d*[LW]|LW|H(?:\(.*)?", re.IGNORECASE)
_MONTH_DAYS: Final = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # longest, by month
_JUST_BEFORE: Final = timedelta(microseconds=1)


class ScheduleError(ValueError):
    """A schedule that cannot be fired; the message names the problem for a human."""


class TimezoneError(ScheduleError):
    """A time zone name that is not in the IANA database; the message suggests a likely fix."""


# ---------------------------------------------------------------------------------------------
# Public API


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A validated schedule in one zone; build it with `parse_schedule`.

    `expression` is the schedule as written, whitespace collapsed, without its CRON_TZ=/TZ=
    prefix (descriptors kept, lower-cased). `key` is canonical: equal keys fire identically.
    `next_after` reuses one croniter walker, so call it from one thread at a time.
    """

    expression: str
    timezone: str
    _engine: _Engine = field(repr=False, compare=False, kw_only=True)

    @property
    def key(self) -> tuple[str, str]:
        """Group key: the canonical numeric expression and the zone name."""
        return (self._engine.canonical, self.timezone)

    def next_after(self, instant: datetime) -> datetime:
        """The first fire instant strictly after the aware `instant`, as an aware UTC datetime."""
        if instant.utcoffset() is None:
            raise ValueError(f"next_after needs an aware datetime, got {instant!r}")
        return self._engine.next_after(instant)

    def has_seconds(self) -> bool:
        """Whether the schedule was written with 6 fields (a leading seconds field)."""
        return self._engine.has_seconds


@functools.lru_cache(maxsize=4096)
def parse_schedule(
    expression: str, *, timezone: str | None = None, default_timezone: str = "UTC"
) -> CronSchedule:
    """Validate `expression` and build the schedule that fires it; raises ScheduleError.

    Cached: a cluster's sources share a handful of schedules, and building one costs ~0.2 ms
    (croniter's expansion), a third of the start-up time at 100k sources. The result is
    immutable; its `next_after` is only ever called from the event loop's thread.

    The zone is the CRON_TZ=/TZ= prefix, else `timezone` (None or "" means unset), else
    `default_timezone`. A prefix and a different `timezone` together are refused.
    """
    text = " ".join(expression.split())
    prefix_zone, body = _split_zone_prefix(text)
    zone_name = _effective_zone(prefix_zone, timezone or None, default_timezone)
    body = body or DEFAULT_EXPRESSION
    try:
        fields = _parse_body(body)
    except _Problem as problem:
        raise ScheduleError(f"invalid schedule {body!r}: {problem}") from None
    engine = _Engine.build(fields, ZoneInfo(zone_name))
    return CronSchedule(expression=_display(body), timezone=zone_name, _engine=engine)


def validate_timezone(name: str) -> str:
    """Return `name` if it is an IANA zone known here, else raise TimezoneError with a hint."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise TimezoneError(_unknown_zone_message(name)) from exc
    return name


# ---------------------------------------------------------------------------------------------
# Zone selection and timezone hints


def _split_zone_prefix(text: str) -> tuple[str | None, str]:
    if not text.startswith(("CRON_TZ=", "TZ=")):
        return None, text
    match = _ZONE_PREFIX.fullmatch(text)
    if match is None:
        raise ScheduleError(f"invalid schedule {text!r}: nothing follows the time zone prefix")
    return match["zone"], match["body"]


def _effective_zone(prefix_zone: str | None, timezone: str | None, default: str) -> str:
    if prefix_zone is not None and timezone is not None and prefix_zone != timezone:
        raise ScheduleError(
            f"the schedule's CRON_TZ=/TZ= prefix names time zone {prefix_zone!r} but the "
            f"timezone is {timezone!r}; set the zone in only one place"
        )
    chosen = prefix_zone if prefix_zone is not None else timezone
    return validate_timezone(chosen if chosen is not None else default)


# Common abbreviations people write instead of a zone name: (zone, what it is) choices.
_ABBREVIATIONS: Final = MappingProxyType(
    {
        "CST": (("America/Chicago", "US Central"), ("Asia/Shanghai", "China Standard Time")),
        "IST": (
            ("Asia/Kolkata", "India"),
            ("Europe/Dublin", "Ireland"),
            ("Asia/Jerusalem", "Israel"),
        ),
        "BST": (("Europe/London", "British Summer Time"), ("Asia/Dhaka", "Bangladesh")),
        "PST": (("America/Los_Angeles", "US Pacific"),),
        "PDT": (("America/Los_Angeles", "US Pacific"),),
        "PT": (("America/Los_Angeles", "US Pacific"),),
        "MDT": (("America/Denver", "US Mountain"),),
        "MT": (("America/Denver", "US Mountain"),),
        "CDT": (("America/Chicago", "US Central"),),
        "CT": (("America/Chicago", "US Central"),),
        "EDT": (("America/New_York", "US Eastern"),),
        "ET": (("America/New_York", "US Eastern"),),
        "AKST": (("America/Anchorage", "Alaska"),),
        "CEST": (("Europe/Berlin", "Central Europe"), ("Europe/Paris", "Central Europe")),
        "EEST": (("Europe/Athens", "Eastern Europe"),),
        "JST": (("Asia/Tokyo", "Japan"),),
        "KST": (("Asia/Seoul", "Korea"),),
        "SGT": (("Asia/Singapore", "Singapore"),),
        "HKT": (("Asia/Hong_Kong", "Hong Kong"),),
        "MSK": (("Europe/Moscow", "Moscow"),),
        "AEST": (("Australia/Sydney", "Australian Eastern"),),
        "AEDT": (("Australia/Sydney", "Australian Eastern"),),
        "AWST": (("Australia/Perth", "Australian Western"),),
        "NZST": (("Pacific/Auckland", "New Zealand"),),
        "NZDT": (("Pacific/Auckland", "New Zealand"),),
        "BRT": (("America/Sao_Paulo", "Brazil"),),
        "SAST": (("Africa/Johannesburg", "South Africa"),),
    }
)
_OFFSET_NAME: Final = re.compile(
    r"(?:UTC|GMT|Z)?\s*(?P<sign>[+-])\s*(?P<hours>\d{1,2})(?::?(?P<minutes>\d{2}))?",
    re.IGNORECASE,
)


def _unknown_zone_message(name: str) -> str:
    if not name.strip():
        return "time zone is empty; use an IANA name such as 'Europe/Berlin' or 'UTC'"
    for hint in (_offset_hint, _abbreviation_hint, _spelling_hint):
        suggestion = hint(name)
        if suggestion:
            return f"unknown time zone {name!r}: {suggestion}"
    return f"unknown time zone {name!r}: use an IANA name such as 'Europe/Berlin' or 'UTC'"


def _offset_hint(name: str) -> str | None:
    match = _OFFSET_NAME.fullmatch(name.strip())
    if match is None:
        return None
    sign, hours, minutes = match["sign"], int(match["hours"]), int(match["minutes"] or 0)
    if minutes or hours > (14 if sign == "+" else 12):
        return "no IANA zone is a bare offset like that; use the zone of the place (Region/City)"
    if hours == 0:
        return "did you mean 'UTC'?"
    etc_name = f"Etc/GMT{'-' if sign == '+' else '+'}{hours}"
    return (
        f"did you mean {etc_name!r}? IANA 'Etc/GMT' names use the POSIX sign, which is flipped: "
        f"{etc_name!r} is UTC{sign}{hours}. A Region/City zone also follows that place's DST."
    )


def _abbreviation_hint(name: str) -> str | None:
    choices = _ABBREVIATIONS.get(name.strip().upper())
    if choices is None:
        return None
    options = " or ".join(f"{zone!r} ({meaning})" for zone, meaning in choices)
    kind = "an ambiguous abbreviation" if len(choices) > 1 else "an abbreviation"
    return f"{name!r} is {kind}, not a zone name; did you mean {options}?"


def _spelling_hint(name: str) -> str | None:
    exact = _zones_by_folded_name().get(_fold_zone_name(name))
    if exact is not None:
        return f"did you mean {exact!r}? Zone names are case-sensitive"
    close = difflib.get_close_matches(name.strip(), sorted(_zones_by_folded_name().values()), 3)
    if not close:
        return None
    return "did you mean " + " or ".join(repr(zone) for zone in close) + "?"


def _fold_zone_name(name: str) -> str:
    return name.strip().lower().replace(" ", "_")


@functools.cache
def _zones_by_folded_name() -> Mapping[str, str]:
    # Reads the zone database once, only on the error path.
    return MappingProxyType({_fold_zone_name(zone): zone for zone in available_timezones()})


# ---------------------------------------------------------------------------------------------
# Expression grammar (robfig/cron as Knative configures it)


class _Problem(Exception):
    """What is wrong with one part of an expression; parse_schedule adds the context."""


@dataclass(frozen=True, slots=True)
class _FieldSpec:
    name: str
    low: int
    high: int
    names: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    names_hint: str = ""
    range_hint: str = ""

    @property
    def size(self) -> int:
        return self.high - self.low + 1


_MONTHS: Final = (
    "jan",
    "feb",
    "mar",
    "apr",
    "may",
    "jun",
    "jul",
    "aug",
    "sep",
    "oct",
    "nov",
    "dec",
)
_WEEKDAYS: Final = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MONTH_NAMES: Final = MappingProxyType({name: number for number, name in enumerate(_MONTHS, 1)})
_DAY_NAMES: Final = MappingProxyType({name: number for number, name in enumerate(_WEEKDAYS)})
_SECOND: Final = _FieldSpec("second", 0, 59)
_MINUTE: Final = _FieldSpec("minute", 0, 59)
_HOUR: Final = _FieldSpec("hour", 0, 23)
_DAY: Final = _FieldSpec("day-of-month", 1, 31)
_MONTH: Final = _FieldSpec("month", 1, 12, _MONTH_NAMES, " or a month name (JAN-DEC)")
_WEEKDAY: Final = _FieldSpec(
    "day-of-week", 0, 6, _DAY_NAMES, " or a day name (SUN-SAT)", " (use 0 or SUN for Sunday)"
)
_FIELD_SPECS: Final = (_SECOND, _MINUTE, _HOUR, _DAY, _MONTH, _WEEKDAY)


@dataclass(frozen=True, slots=True)
class _Fields:
    """The parsed fields as value sets; `*_star` is robfig's star bit (`*`/`?` without step)."""

    values: tuple[frozenset[int], ...]  # second, minute, hour, day, month, weekday
    day_star: bool
    weekday_star: bool
    has_seconds: bool


def _parse_body(body: str) -> _Fields:
    if "@every" in body.lower():
        raise _Problem("@every is not supported; use a cron expression such as '*/5 * * * *'")
    texts = _field_texts(body)
    parsed = [_parse_field(text, spec) for text, spec in zip(texts, _FIELD_SPECS, strict=True)]
    fields = _Fields(
        values=tuple(values for values, _ in parsed),
        day_star=parsed[3][1],
        weekday_star=parsed[5][1],
        has_seconds=len(body.split()) == len(_FIELD_SPECS),
    )
    _check_days_exist(fields)
    return fields


def _field_texts(body: str) -> list[str]:
    if body.startswith("@"):
        expansion = _DESCRIPTORS.get(body.lower())
        if expansion is None:
            known = ", ".join(_DESCRIPTORS)
            raise _Problem(f"unknown descriptor {body!r}; use one of {known}")
        body = expansion
    texts = body.split()
    if len(texts) == len(_FIELD_SPECS) - 1:
        return ["0", *texts]
    if len(texts) == len(_FIELD_SPECS):
        return texts
    year_note = " (a year field is not supported)" if len(texts) == len(_FIELD_SPECS) + 1 else ""
    raise _Problem(
        "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds "
        f"first, found {len(texts)}{year_note}"
    )


def _parse_field(text: str, spec: _FieldSpec) -> tuple[frozenset[int], bool]:
    """Values of one field and its star bit; empty list items are ignored, as robfig does."""
    parts = [part for part in text.split(",") if part]
    if not parts:
        raise _Problem(f"{spec.name} field {text!r} lists no values")
    values: set[int] = set()
    star = False
    for part in parts:
        part_values, part_star = _parse_part(part, spec)
        values |= part_values
        star = star or part_star
    return frozenset(values), star


def _parse_part(part: str, spec: _FieldSpec) -> tuple[frozenset[int], bool]:
    range_text, slash, step_text = part.partition("/")
    step = _parse_step(part, step_text, spec) if slash else 1
    if range_text in ("*", "?"):
        return frozenset(range(spec.low, spec.high + 1, step)), step == 1
    start, end = _parse_range(part, range_text, spec)
    if slash and "-" not in range_text:
        end = spec.high  # robfig: "N/step" means "N-max/step"
    return frozenset(range(start, end + 1, step)), False


def _parse_step(part: str, step_text: str, spec: _FieldSpec) -> int:
    if "/" in step_text:
        raise _Problem(f"{spec.name} field {part!r} has more than one '/'")
    if not (step_text.isascii() and step_text.isdigit()) or int(step_text) == 0:
        raise _Problem(f"{spec.name} field {part!r}: the step must be a positive number")
    return int(step_text)


def _parse_range(part: str, range_text: str, spec: _FieldSpec) -> tuple[int, int]:
    bounds = range_text.split("-")
    if len(bounds) > 2:
        raise _Problem(f"{spec.name} field {part!r} has more than one '-'")
    start = _parse_value(part, bounds[0], spec)
    end = _parse_value(part, bounds[-1], spec)
    if start < spec.low or end > spec.high:
        raise _Problem(
            f"{spec.name} field {part!r} out of range {spec.low}-{spec.high}{spec.range_hint}"
        )
    if start > end:
        raise _Problem(f"{spec.name} field {part!r}: range start {start} is after its end {end}")
    return start, end


def _parse_value(part: str, token: str, spec: _FieldSpec) -> int:
    named = spec.names.get(token.lower())
    if named is not None:
        return named
    if token.isascii() and token.isdigit():
        return int(token)
    if _EXTENSION.fullmatch(token):
        raise _Problem(
            f"{spec.name} field {part!r}: the '#', 'L', 'W' and 'H' cron extensions are not "
            "supported"
        )
    raise _Problem(f"{spec.name} field {part!r}: {token!r} is not a number{spec.names_hint}")


def _check_days_exist(fields: _Fields) -> None:
    """Refuse a day-of-month that no allowed month has (`0 0 30 2 *`): it would never fire."""
    if fields.day_star or not fields.weekday_star:
        return  # the weekday field alone can always match
    days, months = fields.values[3], fields.values[4]
    if any(day <= _MONTH_DAYS[month] for day in days for month in months):
        return
    raise _Problem(
        f"day-of-month {_list_text(days)} never occurs in month {_list_text(months)}, "
        "so the schedule would never fire"
    )


def _list_text(values: frozenset[int]) -> str:
    return ",".join(str(value) for value in sorted(values))


def _display(body: str) -> str:
    return body.lower() if body.startswith("@") else body


# ---------------------------------------------------------------------------------------------
# Canonical form fed to croniter


def _canonical(fields: _Fields) -> str:
    """Numeric 5 fields (6 when seconds are not just 0), robfig's day semantics made explicit."""
    seconds, minutes, hours, _, months, _ = fields.values
    day_text, weekday_text = _day_texts(fields)
    texts = [_field_text(minutes, _MINUTE), _field_text(hours, _HOUR), day_text]
    texts += [_field_text(months, _MONTH), weekday_text]
    if seconds != {0}:
        texts.insert(0, _field_text(seconds, _SECOND))
    return " ".join(texts)


def _day_texts(fields: _Fields) -> tuple[str, str]:
    """robfig ANDs the day fields when either has the star bit, and ORs them otherwise.

    croniter ORs only when neither field *expands* to all values, so a full but starless field
    (`1-31`, `0-6`) under OR must be written as matching every day.
    """
    days, weekdays = fields.values[3], fields.values[5]
    anded = fields.day_star or fields.weekday_star
    if not anded and (len(days) == _DAY.size or len(weekdays) == _WEEKDAY.size):
        return "*", "*"
    return _field_text(days, _DAY), _field_text(weekdays, _WEEKDAY)


def _field_text(values: frozenset[int], spec: _FieldSpec) -> str:
    return "*" if len(values) == spec.size else _list_text(values)


# ---------------------------------------------------------------------------------------------
# Next fire instant: croniter walks naive wall-clock time; zoneinfo maps it to instants


@dataclass(frozen=True, slots=True)
class _Engine:
    """Finds fire instants; holds the one croniter expansion, reused by every call."""

    canonical: str
    has_seconds: bool
    zone: ZoneInfo
    every_hour: bool  # the hour field covers all 24 hours: follow real time through DST
    walker: croniter  # stateful (current time), so an engine is not thread-safe

    @classmethod
    def build(cls, fields: _Fields, zone: ZoneInfo) -> _Engine:
        canonical = _canonical(fields)
        six_fields = len(canonical.split()) == len(_FIELD_SPECS)
        try:
            walker = croniter(
                canonical,
                datetime(2000, 1, 1),  # noqa: DTZ001 -- croniter walks naive wall time
                ret_type=datetime,
                second_at_beginning=six_fields,
            )
        except CroniterError as exc:
            raise ScheduleError(f"cannot expand schedule {canonical!r}: {exc}") from exc
        every_hour = len(fields.values[2]) == _HOUR.size
        return cls(canonical, fields.has_seconds, zone, every_hour, walker)

    def next_after(self, instant: datetime) -> datetime:
        local = instant.astimezone(self.zone)
        wall = local.replace(tzinfo=None, fold=0)
        after = instant.astimezone(UTC).replace(tzinfo=None)
        if self.every_hour and local.fold == 0:
            early, late = self._offsets(wall)
            if early > late:  # inside the first pass of a repeated (fall-back) period
                replay = self._within_repeated_period(wall, after, early, late)
                if replay is not None:
                    return replay.replace(tzinfo=UTC)
        return self._scan(wall, after).replace(tzinfo=UTC)

    def _scan(self, wall: datetime, after: datetime) -> datetime:
        """Walk matching wall times forward from `wall` until one fires after `after`."""
        while True:
            wall = self._next_wall(wall)
            fire = self._fire_instant(wall, after)
            if fire is not None:
                return fire

    def _fire_instant(self, wall: datetime, after: datetime) -> datetime | None:
        """The UTC instant (naive) at which matching `wall` fires after `after`, if any."""
        early, late = self._offsets(wall)
        if early == late:
            return _later_than(wall - early, after)
        if early < late:  # a spring-forward gap: the wall time does not exist
            return None if self.every_hour else _later_than(self._transition(wall), after)
        first = _later_than(wall - early, after)
        if first is not None or not self.every_hour:
            return first  # restricted hours fire only at the first occurrence
        return _later_than(wall - late, after)

    def _within_repeated_period(
        self, wall: datetime, after: datetime, early: timedelta, late: timedelta
    ) -> datetime | None:
        """Next fire while `after` is in a repeated period's first pass: first-pass times
        left, else the replayed (second) occurrences, else None (scan past the period)."""
        start = self._transition(wall) + late  # first wall time of the repeated period
        end = start + (early - late)
        nxt = self._next_wall(wall)
        if nxt < end:
            return nxt - early
        replayed = self._next_wall(start - _JUST_BEFORE)
        return replayed - late if replayed < end else None

    def _next_wall(self, wall: datetime) -> datetime:
        try:
            nxt: datetime = self.walker.get_next(datetime, start_time=wall)
        except CroniterError as exc:
            raise ScheduleError(f"schedule {self.canonical!r} has no next time: {exc}") from exc
        return nxt

    def _offsets(self, wall: datetime) -> tuple[timedelta, timedelta]:
        """UTC offsets of `wall` at fold 0 and 1: equal unless in a gap or a repeated period."""
        early = wall.replace(tzinfo=self.zone).utcoffset()
        late = wall.replace(tzinfo=self.zone, fold=1).utcoffset()
        assert early is not None and late is not None  # ZoneInfo always answers
        return early, late

    def _transition(self, wall: datetime) -> datetime:
        """The UTC instant (naive) of the offset change that makes `wall` skipped or repeated.

        It lies between the two readings of `wall`; bisect it to the second.
        """
        wall = wall.replace(microsecond=0)  # transitions fall on whole seconds
        early, late = self._offsets(wall)
        low, high = wall - max(early, late), wall - min(early, late)
        after_offset = self._offset_at(high)
        lo_s, hi_s = 0, int((high - low).total_seconds())
        while hi_s - lo_s > 1:
            mid = (lo_s + hi_s) // 2
            if self._offset_at(low + timedelta(seconds=mid)) == after_offset:
                hi_s = mid
            else:
                lo_s = mid
        return low + timedelta(seconds=hi_s)

    def _offset_at(self, utc: datetime) -> timedelta | None:
        return utc.replace(tzinfo=UTC).astimezone(self.zone).utcoffset()


def _later_than(candidate: datetime, after: datetime) -> datetime | None:
    return candidate if candidate > after else None
