"""Turning nginx's access log into delivered / expected / duplicated and lateness figures.

Every line is one arrival: nginx's `$msec` arrival time, the event's ce-id, ce-time and
ce-source, and the sender's user agent (mtping sends `mtping/<version>`, Knative Go's
default). A tick is (source, scheduled instant). For mtping the instant is ce-time itself; for
Knative ce-time is the send time after its random 0-500 ms sleep, so it is floored to the
source's period (the minute for `* * * * *`, 30 s for `*/30 * * * * *`). Lateness is arrival
minus the scheduled instant of a tick's first arrival; later arrivals of the same tick are
duplicates. Pure: reads the log bytes it is given, no clock.
"""

from __future__ import annotations

import calendar
import math
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import unquote

from bench.workload import PROBE_PREFIX, period_of_name


@dataclass(frozen=True, slots=True)
class Arrival:
    arrival: float
    source: str
    """namespace/name"""
    ce_time: float
    agent: str
    event_id: str


@dataclass(frozen=True, slots=True)
class MinuteCount:
    start: float
    delivered: int
    expected: int
    duplicated: int


@dataclass(slots=True)
class Ticks:
    """First arrival and arrival count of every (source, scheduled instant) of one adapter."""

    first: dict[tuple[str, float], float] = field(default_factory=dict)
    count: Counter[tuple[str, float]] = field(default_factory=Counter)


def agent_of(user_agent: str) -> str:
    return "mtping" if user_agent.startswith("mtping/") else "knative"


def parse_lines(lines: Iterable[bytes]) -> list[Arrival]:
    """The arrivals in access-log lines (lines without a ce-source are skipped)."""
    parser = _TimeParser()
    arrivals = []
    for raw in lines:
        parts = raw.decode(errors="replace").rstrip("\n").split(" ", 5)
        if len(parts) < 6 or parts[3] == "-" or parts[2] == "-":
            continue
        msec, event_id, ce_time, ce_source, _status, user_agent = parts
        namespace_name = _namespace_name(unquote(ce_source))
        if namespace_name is None:
            continue
        arrivals.append(
            Arrival(
                arrival=float(msec),
                source=namespace_name,
                ce_time=parser.epoch(unquote(ce_time)),
                agent=agent_of(user_agent),
                event_id=event_id,
            )
        )
    return arrivals


def _namespace_name(ce_source: str) -> str | None:
    # "/apis/v1/namespaces/<ns>/pingsources/<name>"
    parts = ce_source.split("/")
    if len(parts) != 7 or parts[3] != "namespaces":
        return None
    return f"{parts[4]}/{parts[6]}"


class _TimeParser:
    """RFC 3339 to epoch seconds; the whole-second part is cached (ticks share seconds)."""

    def __init__(self) -> None:
        self._seconds: dict[str, int] = {}

    def epoch(self, text: str) -> float:
        if not text.endswith("Z"):
            return datetime.fromisoformat(text).timestamp()
        whole = text[:19]
        seconds = self._seconds.get(whole)
        if seconds is None:
            seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
            self._seconds[whole] = seconds
        fraction = text[19:-1]
        return seconds + (float(fraction) if fraction else 0.0)


def name_of(source: str) -> str:
    return source.split("/", 1)[1]


def is_probe(source: str) -> bool:
    return name_of(source).startswith(f"{PROBE_PREFIX}-")


def scheduled_instant(arrival: Arrival) -> float:
    """The tick an arrival belongs to (see the module docstring)."""
    if arrival.agent == "mtping":
        return arrival.ce_time
    period = period_of_name(name_of(arrival.source))
    return math.floor(arrival.ce_time / period) * period


def collect_ticks(arrivals: Iterable[Arrival]) -> Ticks:
    """Workload ticks (probes excluded) with their first arrival and arrival count."""
    ticks = Ticks()
    for arrival in arrivals:
        if is_probe(arrival.source):
            continue
        tick = (arrival.source, scheduled_instant(arrival))
        ticks.count[tick] += 1
        if tick not in ticks.first or arrival.arrival < ticks.first[tick]:
            ticks.first[tick] = arrival.arrival
    return ticks


def repeated_ids(arrivals: Iterable[Arrival], *, window_start: float, window_end: float) -> int:
    """Arrivals of workload ticks in the window that repeat an earlier arrival's ce-id.

    Knative's ids are random per tick but kept across its retries, so for Knative this counts
    retries of requests that had already reached the sink; for mtping it equals `duplicated`.
    """
    seen: set[str] = set()
    repeats = 0
    for arrival in arrivals:
        if is_probe(arrival.source):
            continue
        if window_start <= scheduled_instant(arrival) < window_end:
            repeats += arrival.event_id in seen
            seen.add(arrival.event_id)
    return repeats


def minute_counts(
    ticks: Ticks, *, window_start: float, minutes: int, expected_per_minute: int
) -> list[MinuteCount]:
    """Delivered, expected and duplicated ticks of each whole minute of the window."""
    delivered = [0] * minutes
    duplicated = [0] * minutes
    for (_source, instant), count in ticks.count.items():
        index = math.floor((instant - window_start) / 60)
        if 0 <= index < minutes:
            delivered[index] += 1
            duplicated[index] += count - 1
    return [
        MinuteCount(window_start + 60 * i, delivered[i], expected_per_minute, duplicated[i])
        for i in range(minutes)
    ]


def lateness(ticks: Ticks, *, window_start: float, window_end: float) -> list[float]:
    """Arrival minus scheduled instant of each tick scheduled in the window, sorted."""
    return sorted(
        first - instant
        for (_source, instant), first in ticks.first.items()
        if window_start <= instant < window_end
    )


def lateness_rows(
    ticks: Ticks, *, window_start: float, window_end: float
) -> list[tuple[str, float, float]]:
    """(source, scheduled instant, first arrival) of each tick in the window, for the CSV."""
    return sorted(
        (source, instant, first)
        for (source, instant), first in ticks.first.items()
        if window_start <= instant < window_end
    )


def quantile(ordered: list[float], q: float) -> float | None:
    """The nearest-rank `q` quantile of an already sorted list (None when empty)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def first_arrivals(arrivals: Iterable[Arrival], names: Iterable[str]) -> dict[str, float]:
    """The first arrival time of each source in `names` (namespace/name)."""
    wanted = set(names)
    firsts: dict[str, float] = {}
    for arrival in arrivals:
        if arrival.source in wanted:
            firsts[arrival.source] = min(arrival.arrival, firsts.get(arrival.source, math.inf))
    return firsts


def arrivals_between(arrivals: Iterable[Arrival], start: float, end: float) -> int:
    """How many requests (workload and probes) arrived in [start, end)."""
    return sum(1 for arrival in arrivals if start <= arrival.arrival < end)
