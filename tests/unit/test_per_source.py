"""Per-source metrics: counted only when enabled, removed with the source."""

from __future__ import annotations

from datetime import UTC, datetime

from mtping.delivery import Outcome
from mtping.metrics import REGISTRY
from mtping.model import SourceKey
from mtping.per_source import PerSourceMetrics

KEY = SourceKey("tenant", "pinger")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
DELIVERED = Outcome(delivered=True, status=202, attempts=1, error=None)
GIVEN_UP = Outcome(delivered=False, status=503, attempts=6, error="503 Service Unavailable")


def sample(result: str) -> float | None:
    return REGISTRY.get_sample_value(
        "mtping_source_events_total", {"namespace": "tenant", "name": "pinger", "result": result}
    )


class Recording:
    def __init__(self) -> None:
        self.finished: list[Outcome] = []
        self.deleted: list[SourceKey] = []

    def delivery_finished(self, source: SourceKey, instant: datetime, outcome: Outcome) -> None:
        self.finished.append(outcome)

    def source_changed(self, key: SourceKey, obj: object, outcome: object) -> None:
        raise AssertionError("not called in these tests")

    def source_reresolved(self, key: SourceKey, outcome: object) -> None:
        raise AssertionError("not called in these tests")

    def source_deleted(self, key: SourceKey) -> None:
        self.deleted.append(key)


def test_counts_per_source_and_result_then_delegates() -> None:
    inner = Recording()
    observer = PerSourceMetrics(inner, inner)

    observer.delivery_finished(KEY, T0, DELIVERED)
    observer.delivery_finished(KEY, T0, DELIVERED)
    observer.delivery_finished(KEY, T0, GIVEN_UP)

    assert (sample("delivered"), sample("given_up")) == (2.0, 1.0)
    assert inner.finished == [DELIVERED, DELIVERED, GIVEN_UP]


def test_deleting_the_source_removes_its_series() -> None:
    inner = Recording()
    observer = PerSourceMetrics(inner, inner)
    observer.delivery_finished(KEY, T0, DELIVERED)

    observer.source_deleted(KEY)

    assert sample("delivered") is None
    assert inner.deleted == [KEY]
