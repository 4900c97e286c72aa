"""The benchmark's results: one value per adapter and N, the printed table, the files.

It holds numbers already measured and only formats them: the table (with mtping/Knative ratio
rows), the verdict on each target of the scale issue, results.json, lateness.csv and the PNG
of the lateness distributions. It must never measure anything itself.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.analysis import MinuteCount, quantile
from bench.profiling import Profile

MTPING = "mtping"
KNATIVE = "knative"


@dataclass(slots=True)
class RunResult:
    """What one adapter did with one workload size."""

    adapter: str
    n: int
    window_start: float
    minutes: list[MinuteCount]
    lateness: list[float] = field(repr=False)
    """Sorted lateness (s) of every workload tick scheduled in the window."""
    cpu_seconds: float | None
    events_in_cpu_window: int
    peak_rss_kib: int | None
    idle_rss_kib: int | None
    start_to_scheduled_s: float | None
    create_to_first_s: list[float | None]
    first_tick_late_s: list[float | None]
    """Per probe: first arrival minus the first whole second after it was Ready (its first
    due tick), so negative never, and about 1 s more when that tick was missed."""
    repeated_ids: int
    """Arrivals of window ticks repeating an earlier ce-id (Knative: retries that duplicate)."""
    rows: list[tuple[str, float, float]] = field(repr=False)
    """(source, scheduled instant, first arrival) for lateness.csv."""
    notes: list[str] = field(default_factory=list)

    def late(self, q: float) -> float | None:
        return quantile(self.lateness, q)

    @property
    def cpu_per_1k(self) -> float | None:
        if self.cpu_seconds is None or not self.events_in_cpu_window:
            return None
        return self.cpu_seconds / (self.events_in_cpu_window / 1000)

    @property
    def rss_per_source_kib(self) -> float | None:
        if self.peak_rss_kib is None or self.idle_rss_kib is None or not self.n:
            return None
        return (self.peak_rss_kib - self.idle_rss_kib) / self.n

    @property
    def create_to_first_max(self) -> float | None:
        seen = [value for value in self.create_to_first_s if value is not None]
        if len(seen) < len(self.create_to_first_s) or not seen:
            return None  # a probe that never fired counts as failed
        return max(seen)

    @property
    def all_delivered_once(self) -> bool:
        return all(m.delivered == m.expected and m.duplicated == 0 for m in self.minutes)

    def summary(self) -> dict[str, Any]:
        return {
            "adapter": self.adapter,
            "n": self.n,
            "window_start": self.window_start,
            "minutes": [asdict(m) for m in self.minutes],
            "lateness_s": {"p50": self.late(0.5), "p99": self.late(0.99), "max": self.late(1.0)},
            "ticks_measured": len(self.lateness),
            "cpu_seconds": self.cpu_seconds,
            "events_in_cpu_window": self.events_in_cpu_window,
            "cpu_seconds_per_1k_events": self.cpu_per_1k,
            "peak_rss_kib": self.peak_rss_kib,
            "idle_rss_kib": self.idle_rss_kib,
            "rss_per_source_kib": self.rss_per_source_kib,
            "start_to_all_scheduled_s": self.start_to_scheduled_s,
            "create_to_first_event_s": self.create_to_first_s,
            "probe_first_due_tick_lateness_s": self.first_tick_late_s,
            "repeated_ce_ids": self.repeated_ids,
            "notes": self.notes,
        }


# -- the table ---------------------------------------------------------------------------------

HEADERS = (
    "adapter",
    "N",
    "per minute: delivered/expected/dup",
    "late p50",
    "p99",
    "max",
    "CPU s/1k ev",
    "peak RSS MiB",
    "KiB/source",
    "start→sched s",
    "create→1st s",
)


def table(results: Sequence[RunResult]) -> str:
    rows: list[tuple[str, ...]] = []
    for n in sorted({r.n for r in results}):
        of_n = {r.adapter: r for r in results if r.n == n}
        rows.extend(_row(of_n[name]) for name in (MTPING, KNATIVE) if name in of_n)
        if MTPING in of_n and KNATIVE in of_n:
            rows.append(_ratio_row(of_n[MTPING], of_n[KNATIVE]))
    return _format(HEADERS, rows)


def _row(r: RunResult) -> tuple[str, ...]:
    minutes = " ".join(f"{m.delivered}/{m.expected}/{m.duplicated}" for m in r.minutes)
    peak = None if r.peak_rss_kib is None else r.peak_rss_kib / 1024
    return (
        r.adapter,
        str(r.n),
        minutes or "-",
        _seconds(r.late(0.5)),
        _seconds(r.late(0.99)),
        _seconds(r.late(1.0)),
        _number(r.cpu_per_1k, 3),
        _number(peak, 0),
        _number(r.rss_per_source_kib, 2),
        _number(r.start_to_scheduled_s, 1),
        _number(r.create_to_first_max, 2),
    )


RatioOf = Callable[[RunResult], float | None]
_RATIOS: tuple[tuple[RatioOf, ...], ...] = (
    (lambda r: r.late(0.5), lambda r: r.late(0.99), lambda r: r.late(1.0)),
    (
        lambda r: r.cpu_per_1k,
        lambda r: None if r.peak_rss_kib is None else float(r.peak_rss_kib),
        lambda r: r.rss_per_source_kib,
        lambda r: r.start_to_scheduled_s,
        lambda r: r.create_to_first_max,
    ),
)


def _ratio_row(ours: RunResult, theirs: RunResult) -> tuple[str, ...]:
    cells = [_ratio(get(ours), get(theirs)) for group in _RATIOS for get in group]
    return ("mtping/knative", str(ours.n), "", *cells)


def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or theirs == 0:
        return "-"
    return f"{ours / theirs:.2f}x"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f}ms" if value < 10 else f"{value:.1f}s"


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _format(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    lines = [
        " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in (headers, *rows)
    ]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


# -- targets -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    target: str
    met: bool | None
    """None: not measured in this run (that N was not run)."""
    measured: str


def verdicts(results: Sequence[RunResult]) -> list[Verdict]:
    found = {(r.adapter, r.n): r for r in results}
    big, ten_k = found.get((MTPING, 100_000)), found.get((MTPING, 10_000))
    checks = [*_big_checks(big), _ten_k_check(ten_k)]
    for n in sorted({r.n for r in results}):
        ours, theirs = found.get((MTPING, n)), found.get((KNATIVE, n))
        checks.extend(_versus_knative(n, ours, theirs))
    return checks


def _big_checks(r: RunResult | None) -> list[Verdict]:
    if r is None:
        names = (
            "100k: every event delivered once",
            "100k: p99 lateness <= 1 s",
            "100k: peak RSS <= 4 KiB/source",
            "100k: list + schedule <= 15 s",
            "100k: created source fires <= 1 s after create",
        )
        return [Verdict(name, None, "not run") for name in names]
    totals = (
        sum(m.delivered for m in r.minutes),
        sum(m.expected for m in r.minutes),
        sum(m.duplicated for m in r.minutes),
    )
    return [
        Verdict(
            "100k: every event delivered once",
            r.all_delivered_once,
            "delivered/expected/dup = {}/{}/{}".format(*totals),
        ),
        _at_most("100k: p99 lateness <= 1 s", r.late(0.99), 1.0, "s"),
        _at_most("100k: peak RSS <= 4 KiB/source", r.rss_per_source_kib, 4.0, "KiB"),
        _at_most("100k: list + schedule <= 15 s", r.start_to_scheduled_s, 15.0, "s"),
        _at_most("100k: created source fires <= 1 s after create", r.create_to_first_max, 1.0, "s"),
    ]


def _ten_k_check(r: RunResult | None) -> Verdict:
    name = "10k in one second: p99 lateness <= 250 ms"
    return Verdict(name, None, "not run") if r is None else _at_most(name, r.late(0.99), 0.25, "s")


def _versus_knative(n: int, ours: RunResult | None, theirs: RunResult | None) -> list[Verdict]:
    if ours is None or theirs is None:
        return []
    cpu_limit = None if theirs.cpu_per_1k is None else 0.5 * theirs.cpu_per_1k
    return [
        _at_most(f"{n}: CPU/event <= 0.5x Knative's", ours.cpu_per_1k, cpu_limit, "s/1k"),
        _at_most(f"{n}: p99 lateness <= Knative's", ours.late(0.99), theirs.late(0.99), "s"),
    ]


def _at_most(name: str, value: float | None, limit: float | None, unit: str) -> Verdict:
    if value is None or limit is None:
        return Verdict(name, False if value is None else None, f"{value} vs limit {limit}")
    return Verdict(name, value <= limit, f"{value:.3f} {unit} (limit {limit:.3f})")


def verdict_lines(checks: Sequence[Verdict]) -> str:
    marks = {True: "MET   ", False: "MISSED", None: "n/a   "}
    return "\n".join(f"  {marks[v.met]} {v.target}: {v.measured}" for v in checks)


# -- files -------------------------------------------------------------------------------------


def write_json(
    path: Path,
    *,
    meta: dict[str, Any],
    results: Sequence[RunResult],
    checks: Sequence[Verdict],
    profiles: Sequence[Profile],
) -> None:
    document = {
        **meta,
        "results": [r.summary() for r in results],
        "targets": [asdict(v) for v in checks],
        "profiles": [asdict(p) for p in profiles],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def write_lateness_csv(path: Path, results: Sequence[RunResult]) -> None:
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["adapter", "n", "source", "scheduled", "first_arrival", "lateness_s"])
        for r in results:
            for source, instant, first in r.rows:
                writer.writerow(
                    [
                        r.adapter,
                        r.n,
                        source,
                        f"{instant:.3f}",
                        f"{first:.3f}",
                        f"{first - instant:.3f}",
                    ]
                )


def plot_lateness(path: Path, results: Sequence[RunResult]) -> None:
    """One panel per N: the lateness CDF of each adapter, log-scaled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r.n for r in results})
    figure, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 4.2), squeeze=False)
    for axis, n in zip(axes[0], sizes, strict=True):
        for r in (r for r in results if r.n == n and r.lateness):
            values = [max(value, 1e-3) for value in r.lateness]
            fractions = [(i + 1) / len(values) for i in range(len(values))]
            axis.plot(values, fractions, label=f"{r.adapter} (p99 {_seconds(r.late(0.99))})")
        axis.set_xscale("log")
        axis.set_title(f"N = {n:,}")
        axis.set_xlabel("lateness: arrival - scheduled instant (s)")
        axis.set_ylabel("fraction of ticks")
        axis.axhline(0.99, color="grey", linewidth=0.5, linestyle=":")
        axis.grid(True, which="both", linewidth=0.3)
        axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
