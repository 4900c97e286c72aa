"""The per-event metric types: what prometheus_client renders from them."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from mtping.metrics import EventCounter, EventHistogram


def histogram(buckets: tuple[float, ...] = (0.1, 1.0)) -> tuple[EventHistogram, CollectorRegistry]:
    registry = CollectorRegistry()
    return EventHistogram("t_seconds", "test", buckets=buckets, registry=registry), registry


@pytest.mark.parametrize(
    ("value", "expected_buckets"),
    [
        (0.05, {"0.1": 1, "1.0": 1, "+Inf": 1}),
        (0.1, {"0.1": 1, "1.0": 1, "+Inf": 1}),  # "le": a value on a bound counts in it
        (0.5, {"0.1": 0, "1.0": 1, "+Inf": 1}),
        (7.0, {"0.1": 0, "1.0": 0, "+Inf": 1}),
    ],
)
def test_a_histogram_observation_lands_in_every_bucket_at_or_above_it(
    value: float, expected_buckets: dict[str, int]
) -> None:
    metric, registry = histogram()
    metric.observe(value)
    for bound, count in expected_buckets.items():
        assert registry.get_sample_value("t_seconds_bucket", {"le": bound}) == count
    assert registry.get_sample_value("t_seconds_count") == 1
    assert registry.get_sample_value("t_seconds_sum") == pytest.approx(value)


def test_histogram_buckets_are_cumulative_and_count_is_the_inf_bucket() -> None:
    metric, registry = histogram()
    for value in (0.01, 0.02, 0.5, 3.0, 4.0):
        metric.observe(value)
    assert registry.get_sample_value("t_seconds_bucket", {"le": "0.1"}) == 2
    assert registry.get_sample_value("t_seconds_bucket", {"le": "1.0"}) == 3
    assert registry.get_sample_value("t_seconds_bucket", {"le": "+Inf"}) == 5
    assert registry.get_sample_value("t_seconds_count") == 5
    assert registry.get_sample_value("t_seconds_sum") == pytest.approx(7.53)


def test_counter_series_by_position_and_by_name_are_the_same() -> None:
    registry = CollectorRegistry()
    counter = EventCounter("t_events_total", "test", ["namespace", "result"], registry=registry)
    counter.labels("a", "delivered").inc()
    counter.labels(namespace="a", result="delivered").inc(2)
    counter.labels(result="dropped", namespace="b").inc()
    assert (
        registry.get_sample_value("t_events_total", {"namespace": "a", "result": "delivered"}) == 3
    )
    assert registry.get_sample_value("t_events_total", {"namespace": "b", "result": "dropped"}) == 1


def test_counter_refuses_the_wrong_number_of_labels() -> None:
    counter = EventCounter("t_total", "test", ["outcome"], registry=CollectorRegistry())
    with pytest.raises(ValueError, match="outcome"):
        counter.labels("2xx", "extra")


def test_exposition_has_the_usual_types_and_help() -> None:
    registry = CollectorRegistry()
    EventCounter("t_events_total", "Events.", ["result"], registry=registry).labels("ok").inc()
    EventHistogram("t_seconds", "Seconds.", buckets=(1.0,), registry=registry).observe(0.5)
    text = generate_latest(registry).decode()
    assert "# TYPE t_events_total counter" in text
    assert 't_events_total{result="ok"} 1.0' in text
    assert "# TYPE t_seconds histogram" in text
    assert 't_seconds_bucket{le="1.0"} 1.0' in text
    assert "# HELP t_seconds Seconds." in text
