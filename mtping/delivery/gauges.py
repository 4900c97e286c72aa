"""Gauges of the delivery path kept as plain integers and read by Prometheus when scraped.

`Gauge.inc`/`dec` take a lock each; two gauges moved twice per event cost more than a tenth of
a whole send, for values read a few times a minute. A `LiveCount` is an int that its gauge
reads at scrape time instead (`Gauge.set_function`). One per gauge per process: the counts
of every Sender or Dispatcher in the process add up in it, as inc/dec did. No I/O.
"""

from __future__ import annotations

from prometheus_client import Gauge

from mtping.metrics import IN_FLIGHT, IN_QUEUE


class LiveCount:
    """An integer that `gauge` reports at scrape time."""

    __slots__ = ("value",)

    def __init__(self, gauge: Gauge) -> None:
        self.value = 0
        gauge.set_function(self.read)

    def read(self) -> float:
        return float(self.value)


SENDS_IN_FLIGHT = LiveCount(IN_FLIGHT)
"""Events inside `Sender.send_prepared` (`mtping_sends_in_flight`)."""
EVENTS_QUEUED = LiveCount(IN_QUEUE)
"""Events handed to a Dispatcher and not finished (`mtping_events_queued`)."""
