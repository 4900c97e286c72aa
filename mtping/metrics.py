"""Every Prometheus metric mtping exports, defined once, here.

Names follow Prometheus conventions (`mtping_` prefix, `_total` counters, `_seconds` units).
Labels are bounded: namespace and result class, never a per-source or per-event value, so a
cluster with 100k sources exports a few hundred series. Other modules import the objects and
record; nothing here does I/O except `serve_metrics`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

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

EVENTS = Counter(
    "mtping_events_total",
    "Ticks finished, by source namespace and result class (delivered, given_up, dropped).",
    ["namespace", "result"],
    registry=REGISTRY,
)
ATTEMPTS = Counter(
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
TICK_LATENESS = Histogram(
    "mtping_tick_lateness_seconds",
    "Send start minus the scheduled instant of the tick.",
    buckets=LATENESS_BUCKETS,
    registry=REGISTRY,
)
SINK_LATENCY = Histogram(
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
