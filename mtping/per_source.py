"""Opt-in per-source metrics (`--per-source-metrics`): one series per source and result.

Off by default: at 100k sources it means 100k+ series, more than most Prometheus setups want.
When on, a source's series are removed as soon as the source is deleted, so churn does not
leave dead series behind. It wraps the engine's observers rather than changing them.
"""

from __future__ import annotations

import contextlib
from datetime import datetime

from mtping import metrics
from mtping.delivery import Outcome
from mtping.engine import DeliveryObserver
from mtping.model import SourceKey
from mtping.model.status import Outcome as SourceOutcome
from mtping.sources import NoObserver, RawObject, SourceObserver

RESULTS = ("delivered", "given_up", "dropped")


class PerSourceMetrics:
    """A DeliveryObserver and SourceObserver that counts per source, then delegates."""

    def __init__(
        self, sources: SourceObserver | None = None, deliveries: DeliveryObserver | None = None
    ) -> None:
        self._sources = sources or NoObserver()
        self._deliveries = deliveries

    def delivery_finished(self, source: SourceKey, instant: datetime, outcome: Outcome) -> None:
        result = (
            "delivered"
            if outcome.delivered
            else ("dropped" if outcome.attempts == 0 else "given_up")
        )
        metrics.SOURCE_EVENTS.labels(source.namespace, source.name, result).inc()
        if self._deliveries is not None:
            self._deliveries.delivery_finished(source, instant, outcome)

    def source_changed(self, key: SourceKey, obj: RawObject, outcome: SourceOutcome) -> None:
        self._sources.source_changed(key, obj, outcome)

    def source_reresolved(self, key: SourceKey, outcome: SourceOutcome) -> None:
        self._sources.source_reresolved(key, outcome)

    def source_deleted(self, key: SourceKey) -> None:
        for result in RESULTS:
            with contextlib.suppress(KeyError):  # that result was never counted
                metrics.SOURCE_EVENTS.remove(key.namespace, key.name, result)
        self._sources.source_deleted(key)
