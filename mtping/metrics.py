"""Every Prometheus metric mtping exports, defined once, here.

Names follow Prometheus conventions (`mtping_` prefix, `_total` counters, `_seconds` units).
Labels are bounded: namespace and result class, never a per-source or per-event value, so a
cluster with 100k sources exports a few hundred series. Other modules import the objects and
record; nothing here does I/O except `serve_metrics`.

The four metrics recorded on every event (`EVENTS`, `ATTEMPTS`, `TICK_LATENESS`,
`SINK_LATENCY`) are `EventCounter` and `EventHistogram`: plain integer additions, rendered by
prometheus_client at scrape time through its public Collector API. prometheus_client's own
types take a lock per value and walk the buckets in Python; with four records per event that
was 12 % of a 100k burst's CPU (py-spy, bench/README.md), and a record here costs a fifth of
theirs. They are safe because every record and every scrape runs on the event loop's thread.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

REGISTRY = CollectorRegistry(auto_describe=True)


class EventHistogram:
    """A label-less histogram for the per-event path (see the module docstring)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = tuple(buckets)
        self._counts = [0] * (len(self._bounds) + 1)  # The last one is +Inf.
        self._sum = 0.0
        registry.register(self)

    def observe(self, value: float) -> None:
        # Prometheus buckets are "less or equal": the first bound >= value.
        self._counts[bisect_left(self._bounds, value)] += 1
        self._sum += value

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self._name, self._documentation)
        cumulative, buckets = 0, []
        for bound, count in zip(
            (*map(floatToGoString, self._bounds), "+Inf"), self._counts, strict=True
        ):
            cumulative += count
            buckets.append((bound, float(cumulative)))
        family.add_metric([], buckets, sum_value=self._sum)
        yield family

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self._name, self._documentation)


class EventCount:
    """One labelled series of an EventCounter."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class EventCounter:
    """A labelled counter for the per-event path (see the module docstring). `labels` takes
    the values positionally or by name, as prometheus_client's does."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        registry: CollectorRegistry,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._series: dict[tuple[str, ...], EventCount] = {}
        registry.register(self)

    def labels(self, *values: str, **by_name: str) -> EventCount:
        key = values or tuple(by_name[name] for name in self._labelnames)
        if len(key) != len(self._labelnames):
            raise ValueError(f"{self._name} takes labels {self._labelnames}")
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = EventCount()
        return series

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)
        for key, series in self._series.items():
            family.add_metric(list(key), series.value)
        yield family

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)


# Lateness of a tick: send start minus the scheduled instant. Buckets from 1 ms to 1 min.
LATENESS_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
SINK_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

EVENTS = EventCounter(
    "mtping_events_total",
    "Ticks finished, by source namespace and result class (delivered, given_up, dropped).",
    ["namespace", "result"],
    registry=REGISTRY,
)
ATTEMPTS = EventCounter(
    "mtping_delivery_attempts_total",
    "HTTP send attempts, by outcome class (2xx, 3xx, 4xx, 5xx, timeout, connection).",
    ["outcome"],
    registry=REGISTRY,
)
RETRIES = Counter(
    "mtping_delivery_retries_total",
    "Attempts that were a retry of an earlier failed attempt of the same event.",
    registry=REGISTRY,
)
GIVEN_UP = Counter(
    "mtping_deliveries_given_up_total",
    "Events abandoned after the retry policy ran out, by source namespace and last reason.",
    ["namespace", "reason"],
    registry=REGISTRY,
)
TICK_LATENESS = EventHistogram(
    "mtping_tick_lateness_seconds",
    "Send start minus the scheduled instant of the tick.",
    buckets=LATENESS_BUCKETS,
    registry=REGISTRY,
)
SINK_LATENCY = EventHistogram(
    "mtping_sink_latency_seconds",
    "Duration of one HTTP attempt, request start to response headers.",
    buckets=SINK_LATENCY_BUCKETS,
    registry=REGISTRY,
)
SOURCES = Gauge(
    "mtping_sources_scheduled",
    "PingSources currently in the scheduler heap.",
    registry=REGISTRY,
)
UNSCHEDULED_SOURCES = Gauge(
    "mtping_sources_unscheduled",
    "PingSources seen but not scheduled, by reason (invalid spec, sink unresolved or not Ready).",
    ["reason"],
    registry=REGISTRY,
)
GROUPS = Gauge(
    "mtping_schedule_groups",
    "Distinct (schedule, timezone) groups in the scheduler heap.",
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "mtping_sends_in_flight",
    "Events being delivered right now (including those waiting for a retry).",
    registry=REGISTRY,
)
RELISTS = Counter(
    "mtping_watch_relists_total",
    "Full lists of PingSources, by reason (initial, gone, error).",
    ["reason"],
    registry=REGISTRY,
)
WATCH_RESTARTS = Counter(
    "mtping_watch_restarts_total",
    "Watch requests re-opened, by reason (timeout, error, gone).",
    ["reason"],
    registry=REGISTRY,
)
TICKS_SKIPPED = Counter(
    "mtping_ticks_skipped_total",
    "Source ticks not sent because they were older than the catch-up window when reached.",
    registry=REGISTRY,
)
IN_QUEUE = Gauge(
    "mtping_events_queued",
    "Events handed to delivery and not finished yet (queued or being sent).",
    registry=REGISTRY,
)
STATUS_WRITES = Counter(
    "mtping_status_writes_total",
    "PingSource status writes (standalone mode), by result (written, conflict, failed).",
    ["result"],
    registry=REGISTRY,
)
SOURCE_EVENTS = Counter(
    "mtping_source_events_total",
    "Ticks finished per source (only with --per-source-metrics: one series per source and "
    "result, removed when the source is deleted).",
    ["namespace", "name", "result"],
    registry=REGISTRY,
)
