"""The scale benchmark: mtping against Knative's adapter on N PingSources, one table out.

    .venv/bin/python -m bench.scale --sources 1000,10000 [--minutes 2] [--out bench/out]

On a real kube-apiserver + etcd (tests.harness) it creates the workload (bench.workload), made
Ready as Knative's controller would, and nginx sinks (bench.sinks); then, for each N, runs
mtping (`--mode adapter`) and then Knative's adapter on the same sources, each for M whole
minutes, and reads what nginx logged (bench.analysis). Idle memory of each adapter is
measured first, on an empty cluster. It prints the table and the target verdicts and writes
results.json, lateness.csv and lateness.png under <out>/<timestamp>/. It is a benchmark, not a
test: it asserts nothing and exits 0 whether targets are met or not.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import analysis, workload
from bench.adapters import (
    KNATIVE,
    MTPING,
    Adapter,
    KnativeAdapter,
    MtpingAdapter,
    cpu_seconds,
    knative_logging_config_map,
    memory_kib,
    start_knative_adapter,
    start_mtping_adapter,
    wait_knative_started,
    wait_mtping_ready,
)
from bench.profiling import Profile, start_recording, summarise
from bench.report import (
    RunResult,
    plot_lateness,
    table,
    verdict_lines,
    verdicts,
    write_json,
    write_lateness_csv,
)
from bench.sinks import Sinks, start_sinks
from tests.harness.binaries import REPO_ROOT
from tests.harness.controlplane import ControlPlane
from tests.harness.rest import APPLY_PATCH, ApiError

SYSTEM_NAMESPACE = "knative-eventing"
SERVICE_ACCOUNT = "pingsource-mt-adapter"
WINDOW_LEAD_S = 2.0
"""The window starts at the first minute at least this long after all sources are scheduled."""
GRACE_S = 3.0
"""How long an adapter keeps running after its window, so the window's last ticks arrive."""
PROBE_AT_S = 20.0
"""Probes are created this long into the window, away from the top-of-minute burst."""
PROBE_LIFE_S = 6.0
PROBES = 5


@dataclass(frozen=True, slots=True)
class Options:
    sizes: tuple[int, ...]
    adapters: tuple[str, ...]
    minutes: int
    out: Path
    sinks: int
    sync_timeout: float
    knative_rss_cap_mib: int
    profile: bool
    wait_for_tests: bool
    keep_work: bool


class Stopped(Exception):
    """The adapter died or was stopped for going over its memory cap."""


@dataclass(slots=True)
class Guard:
    """Watches a running adapter while the benchmark sleeps: alive, under its memory cap."""

    adapter: Adapter
    rss_cap_kib: int | None
    last_cpu: float | None = None
    last_hwm_kib: int | None = None
    reason: str = ""

    def check(self) -> None:
        if not self.adapter.process.running():
            self.reason = f"{self.adapter.name} exited ({self.adapter.process.returncode()})"
            raise Stopped(self.reason)
        pid = self.adapter.process.pid
        self.last_cpu = cpu_seconds(pid)
        memory = memory_kib(pid)
        self.last_hwm_kib = memory.get("VmHWM")
        if self.rss_cap_kib is not None and memory.get("VmRSS", 0) > self.rss_cap_kib:
            self.reason = f"stopped: RSS {memory['VmRSS'] // 1024} MiB over the cap"
            raise Stopped(self.reason)

    def sleep_until(self, wall_time: float) -> None:
        while (left := wall_time - time.time()) > 0:
            self.check()
            time.sleep(min(0.5, left))


@dataclass
class Bench:
    """One control plane, one nginx, a growing workload; runs the adapters on it."""

    options: Options
    plane: ControlPlane
    sinks: Sinks
    work_dir: Path
    adapter_kubeconfig: Path
    idle_rss_kib: dict[str, int] = field(default_factory=dict)
    created: int = 0

    # -- workload -------------------------------------------------------------------------

    def grow_to(self, n: int) -> float:
        """Create sources until the workload has `n`; the seconds it took."""
        objects = [workload.workload_source(i, self.sinks.urls) for i in range(self.created, n)]
        print(f"creating {len(objects)} sources (workload {self.created} -> {n})", flush=True)
        seconds = workload.create_ready(self.plane.admin_credentials, objects)
        self.created = n
        print(f"  done in {seconds:.1f}s", flush=True)
        return seconds

    # -- adapters -------------------------------------------------------------------------

    def start(self, name: str, tag: str) -> Adapter:
        log_dir = self.work_dir / f"{name}-{tag}"
        log_dir.mkdir(parents=True, exist_ok=True)
        if name == MTPING:
            return start_mtping_adapter(self.adapter_kubeconfig, log_dir)
        return start_knative_adapter(self.plane.kubeconfig, log_dir)

    def measure_idle(self, name: str) -> int:
        """Peak RSS (KiB) of the adapter started on a cluster with no PingSources."""
        adapter = self.start(name, "idle")
        try:
            if isinstance(adapter, MtpingAdapter):
                wait_mtping_ready(adapter)
            elif isinstance(adapter, KnativeAdapter):
                wait_knative_started(adapter)
            time.sleep(3.0)
            peak = memory_kib(adapter.process.pid)["VmHWM"]
        finally:
            adapter.stop()
        self.idle_rss_kib[name] = peak
        print(f"{name} idle: peak RSS {peak / 1024:.1f} MiB", flush=True)
        return peak

    def run(self, name: str, n: int) -> RunResult:
        """Start `name` on the workload of `n`, measure M whole minutes, stop it."""
        log_offset = self.sinks.log_size()
        began = time.time()
        adapter = self.start(name, str(n))
        cap = self.options.knative_rss_cap_mib * 1024 if name == KNATIVE else None
        guard = Guard(adapter, cap)
        measured = _Measured()
        try:
            self._measure(adapter, guard, n, began, measured)
        except Stopped as stop:
            measured.notes.append(str(stop))
        finally:
            adapter.stop()
            self._delete_probes(measured.probes)
        time.sleep(2.0)  # nginx flushes its access log buffer every second
        return self._result(name, n, measured, guard, log_offset)

    def _measure(
        self, adapter: Adapter, guard: Guard, n: int, began: float, measured: _Measured
    ) -> None:
        scheduled_at = self._wait_scheduled(adapter, guard, n)
        if scheduled_at is None:
            measured.notes.append(
                f"only {adapter.scheduled()} of {n} scheduled after {self.options.sync_timeout}s"
            )
        else:
            measured.start_to_scheduled = scheduled_at - began
        measured.window_start = _next_minute(time.time() + WINDOW_LEAD_S)
        window_end = measured.window_start + 60 * self.options.minutes
        print(
            f"  {adapter.name} N={n}: scheduled in {measured.start_to_scheduled}s; window "
            f"{_hhmmss(measured.window_start)}-{_hhmmss(window_end)}",
            flush=True,
        )
        guard.sleep_until(measured.window_start - 1)
        measured.cpu_before = cpu_seconds(adapter.process.pid)
        self._probe(guard, adapter.name, measured)
        guard.sleep_until(window_end - 1)
        measured.cpu_after = cpu_seconds(adapter.process.pid)
        measured.peak_rss_kib = memory_kib(adapter.process.pid)["VmHWM"]
        guard.sleep_until(window_end + GRACE_S)

    def _wait_scheduled(self, adapter: Adapter, guard: Guard, n: int) -> float | None:
        deadline = time.monotonic() + self.options.sync_timeout
        while time.monotonic() < deadline:
            guard.check()
            if adapter.scheduled(n) >= n:
                if isinstance(adapter, KnativeAdapter) and adapter.all_synced_at is not None:
                    return adapter.all_synced_at
                return time.time()
            time.sleep(0.1)
        return None

    def _probe(self, guard: Guard, tag: str, measured: _Measured) -> None:
        """Create every-second sources mid-minute; delete them once they had time to fire."""
        guard.sleep_until(measured.window_start + PROBE_AT_S)
        rest = self.plane.rest
        for index in range(PROBES):
            probe = workload.create_probe(rest, tag=tag, index=index, sink=self.sinks.urls[0])
            measured.probes.append(probe)
            measured.created.append(probe)
        guard.sleep_until(measured.window_start + PROBE_AT_S + PROBE_LIFE_S)
        self._delete_probes(measured.probes)

    def _delete_probes(self, probes: list[workload.Probe]) -> None:
        rest = self.plane.rest
        while probes:
            with contextlib.suppress(ApiError):
                workload.delete_probe(rest, probes[-1])
            probes.pop()

    def _result(
        self, name: str, n: int, measured: _Measured, guard: Guard, log_offset: int
    ) -> RunResult:
        arrivals = [a for a in self._arrivals_since(log_offset) if a.agent == name]
        window_start = measured.window_start
        window_end = window_start + 60 * self.options.minutes
        ticks = analysis.collect_ticks(arrivals)
        cpu_end = measured.cpu_after if measured.cpu_after is not None else guard.last_cpu
        cpu = None
        if measured.cpu_before is not None and cpu_end is not None:
            cpu = cpu_end - measured.cpu_before
        firsts = analysis.first_arrivals(
            arrivals, [f"{p.namespace}/{p.name}" for p in measured.created]
        )
        return RunResult(
            adapter=name,
            n=n,
            window_start=window_start,
            minutes=analysis.minute_counts(
                ticks,
                window_start=window_start,
                minutes=self.options.minutes,
                expected_per_minute=workload.ticks_per_minute(n),
            ),
            lateness=analysis.lateness(ticks, window_start=window_start, window_end=window_end),
            cpu_seconds=cpu,
            events_in_cpu_window=analysis.arrivals_between(
                arrivals, window_start - 1, window_end - 1
            ),
            peak_rss_kib=measured.peak_rss_kib or guard.last_hwm_kib,
            idle_rss_kib=self.idle_rss_kib.get(name),
            start_to_scheduled_s=measured.start_to_scheduled,
            create_to_first_s=[
                _minus(firsts.get(f"{p.namespace}/{p.name}"), p.created_at)
                for p in measured.created
            ],
            first_tick_late_s=[
                _minus(firsts.get(f"{p.namespace}/{p.name}"), math.ceil(p.ready_at))
                for p in measured.created
            ],
            repeated_ids=analysis.repeated_ids(
                arrivals, window_start=window_start, window_end=window_end
            ),
            rows=analysis.lateness_rows(ticks, window_start=window_start, window_end=window_end),
            notes=measured.notes,
        )

    def _arrivals_since(self, offset: int) -> list[analysis.Arrival]:
        with self.sinks.access_log.open("rb") as stream:
            stream.seek(offset)
            return analysis.parse_lines(stream)

    # -- profile --------------------------------------------------------------------------

    def profile_mtping(self, n: int, start_to_scheduled: float | None) -> list[Profile]:
        """py-spy on mtping: its list + schedule phase, then one top-of-minute burst."""
        out = self.options.out
        adapter = self.start(MTPING, f"profile-{n}")
        profiles = []
        try:
            time.sleep(0.5)  # let the interpreter come up before py-spy looks for it
            startup_s = math.ceil((start_to_scheduled or 30.0) + 5)
            raw = out / f"profile-mtping-{n}-startup.txt"
            _record(adapter.process.pid, raw, startup_s)
            profiles.append(summarise(f"N={n}: start, list + schedule ({startup_s}s)", raw))
            boundary = _next_minute(time.time() + WINDOW_LEAD_S)
            Guard(adapter, None).sleep_until(boundary - 1)
            raw = out / f"profile-mtping-{n}-tick.txt"
            _record(adapter.process.pid, raw, 20)
            profiles.append(summarise(f"N={n}: top-of-minute burst (20s from :59)", raw))
        finally:
            adapter.stop()
        return profiles


@dataclass(slots=True)
class _Measured:
    window_start: float = 0.0
    start_to_scheduled: float | None = None
    cpu_before: float | None = None
    cpu_after: float | None = None
    peak_rss_kib: int | None = None
    probes: list[workload.Probe] = field(default_factory=list)
    """Probes not deleted yet."""
    created: list[workload.Probe] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _record(pid: int, raw: Path, seconds: int) -> None:
    spy = start_recording(pid, out=raw, seconds=seconds)
    deadline = time.monotonic() + seconds + 30
    while spy.running() and time.monotonic() < deadline:
        time.sleep(0.2)
    spy.stop(grace_seconds=5.0)


def _minus(later: float | None, earlier: float) -> float | None:
    return None if later is None else later - earlier


def _next_minute(after: float) -> float:
    return float(math.ceil(after / 60) * 60)


def _hhmmss(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S")


# -- the run ----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    # SIGTERM (a `timeout`, a closed CI job) must unwind like Ctrl-C: the finally blocks stop
    # nginx, the adapters and the control plane, whose workers would otherwise outlive us.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = options.out / stamp
    out.mkdir(parents=True, exist_ok=True)
    options = _with_out(options, out)
    meta = _meta(options)
    print(f"scale benchmark {meta['commit']} -> {out}", flush=True)
    results: list[RunResult] = []
    profiles: list[Profile] = []
    try:
        _run_all(options, results, profiles)
    finally:
        _write_outputs(out, meta, results, profiles)
    return 0


def _run_all(options: Options, results: list[RunResult], profiles: list[Profile]) -> None:
    _raise_open_files_limit()
    work_dir = Path(tempfile.mkdtemp(prefix="mtping-bench-"))
    try:
        with ControlPlane(state_dir=work_dir / "cluster") as plane:
            bench = _set_up(options, plane, work_dir)
            try:
                _run_sizes(bench, results, profiles)
            finally:
                bench.sinks.stop()
    finally:
        if options.keep_work:
            print(f"work dir kept: {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)


def _set_up(options: Options, plane: ControlPlane, work_dir: Path) -> Bench:
    plane.install_crds()
    plane.apply_manifest(REPO_ROOT / "config" / "namespace.yaml")
    plane.apply_manifest(REPO_ROOT / "config" / "rbac.yaml")
    kubeconfig = plane.service_account_kubeconfig(SYSTEM_NAMESPACE, SERVICE_ACCOUNT)
    for namespace in workload.namespaces():
        plane.create_namespace(namespace)
    # Its own field manager: the harness re-applies `data: {}` as another one on every start.
    apply_as(plane, knative_logging_config_map(SYSTEM_NAMESPACE), manager="mtping-bench")
    sinks = start_sinks(work_dir, count=options.sinks)
    return Bench(
        options=options,
        plane=plane,
        sinks=sinks,
        work_dir=work_dir,
        adapter_kubeconfig=kubeconfig,
    )


def apply_as(plane: ControlPlane, obj: dict[str, Any], *, manager: str) -> None:
    """Server-side apply `obj` (a namespaced core object) as field manager `manager`."""
    meta = obj["metadata"]
    path = f"/api/v1/namespaces/{meta['namespace']}/configmaps/{meta['name']}"
    query = urllib.parse.urlencode({"fieldManager": manager, "force": "true"})
    plane.rest.request("PATCH", f"{path}?{query}", body=obj, content_type=APPLY_PATCH)


def _run_sizes(bench: Bench, results: list[RunResult], profiles: list[Profile]) -> None:
    options = bench.options
    for name in options.adapters:
        bench.measure_idle(name)
    for n in options.sizes:
        _wait_for_quiet(options)
        bench.grow_to(n)
        for name in options.adapters:
            _wait_for_quiet(options)
            result = bench.run(name, n)
            results.append(result)
            print(table([result]), flush=True)
    if options.profile and MTPING in options.adapters:
        largest = options.sizes[-1]
        ours = next(r for r in results if r.adapter == MTPING and r.n == largest)
        _wait_for_quiet(options)
        profiles.extend(bench.profile_mtping(largest, ours.start_to_scheduled_s))


def _write_outputs(
    out: Path, meta: dict[str, Any], results: list[RunResult], profiles: list[Profile]
) -> None:
    checks = verdicts(results)
    write_json(out / "results.json", meta=meta, results=results, checks=checks, profiles=profiles)
    write_lateness_csv(out / "lateness.csv", results)
    if results:
        plot_lateness(out / "lateness.png", results)
    text = _report_text(meta, results, checks, profiles)
    (out / "table.txt").write_text(text + "\n")
    print("\n" + text, flush=True)
    print(f"\nwritten: {out}/results.json, lateness.csv, lateness.png, table.txt")


def _report_text(
    meta: dict[str, Any],
    results: list[RunResult],
    checks: Sequence[Any],
    profiles: list[Profile],
) -> str:
    lines = [
        f"commit {meta['commit']}  {meta['date']}  {meta['machine']}  "
        f"{meta['minutes']} min per adapter and N, {meta['sinks']} nginx sinks",
        table(results),
        "",
        "targets (mtping):",
        verdict_lines(checks),
    ]
    lines.extend(f"note: {r.adapter} N={r.n}: {note}" for r in results for note in r.notes)
    lines.extend(
        f"note: {r.adapter} N={r.n}: {r.repeated_ids} arrivals repeated an earlier ce-id (retries)"
        for r in results
        if r.repeated_ids
    )
    lines.extend(_probe_lines(results))
    for profile in profiles:
        lines.extend(["", f"profile {profile.phase}: {profile.samples} busy samples"])
        lines.extend(f"  self {e.share:6.1%}  {e.function}" for e in profile.self_top[:10])
        lines.extend(f"  incl {e.share:6.1%}  {e.function}" for e in profile.total_top[:12])
    return "\n".join(lines)


def _probe_lines(results: list[RunResult]) -> list[str]:
    lines = []
    for r in results:
        late = [
            f"{value * 1000:.0f}" if value is not None else "never" for value in r.first_tick_late_s
        ]
        lines.append(
            f"probes: {r.adapter} N={r.n}: first due tick after Ready arrived "
            f"+[{', '.join(late)}] ms"
        )
    return lines


# -- options and environment --------------------------------------------------------------------


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--sources",
        default="1000,10000",
        help="workload sizes N, comma separated (default %(default)s)",
    )
    parser.add_argument(
        "--adapters",
        default=f"{MTPING},{KNATIVE}",
        help="adapters to run, in this order, comma separated (default %(default)s)",
    )
    parser.add_argument(
        "--minutes",
        type=int,
        default=2,
        help="whole minutes measured per adapter and N (default 2)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT / "bench" / "out",
        help="results go to OUT/<timestamp>/",
    )
    parser.add_argument(
        "--sinks", type=int, default=4, help="distinct sinks: nginx servers (default 4)"
    )
    parser.add_argument(
        "--sync-timeout",
        type=float,
        default=300.0,
        help="seconds an adapter may take to schedule every source (default 300)",
    )
    parser.add_argument(
        "--knative-rss-cap-mib",
        type=int,
        default=12288,
        help="stop Knative's adapter above this RSS (default 12288)",
    )
    parser.add_argument(
        "--no-profile",
        action="store_true",
        help="skip the py-spy profile of mtping at the largest N",
    )
    parser.add_argument(
        "--no-wait-for-tests",
        action="store_true",
        help="start heavy phases even while integration tests run",
    )
    parser.add_argument(
        "--keep-work", action="store_true", help="keep the work dir (logs, access log, etcd)"
    )
    args = parser.parse_args(argv)
    adapters = tuple(name.strip() for name in args.adapters.split(",") if name.strip())
    unknown = set(adapters) - {MTPING, KNATIVE}
    if unknown or not adapters:
        parser.error(f"--adapters: choose from {MTPING}, {KNATIVE} (got {args.adapters!r})")
    return Options(
        sizes=tuple(sorted({int(size) for size in args.sources.split(",")})),
        adapters=adapters,
        minutes=args.minutes,
        out=args.out,
        sinks=args.sinks,
        sync_timeout=args.sync_timeout,
        knative_rss_cap_mib=args.knative_rss_cap_mib,
        profile=not args.no_profile,
        wait_for_tests=not args.no_wait_for_tests,
        keep_work=args.keep_work,
    )


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _with_out(options: Options, out: Path) -> Options:
    fields = {name: getattr(options, name) for name in Options.__dataclass_fields__}
    return Options(**{**fields, "out": out})


def _meta(options: Options) -> dict[str, Any]:
    return {
        "commit": _commit(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {_memory_gib():.0f} GiB",
        "sizes": list(options.sizes),
        "adapters": list(options.adapters),
        # Set to run an older mtping tree (a `git archive` copy) against this benchmark.
        "pythonpath": os.environ.get("PYTHONPATH", ""),
        "minutes": options.minutes,
        "sinks": options.sinks,
    }


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    dirty = " + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    return f"{git('rev-parse', '--short', 'HEAD') or 'unknown'}{dirty}"


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def _raise_open_files_limit() -> None:
    """Children inherit it: Knative opens a connection per event, nginx one per connection."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for wanted in (1 << 20, hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(wanted, hard)))
            return


def _integration_tests_running() -> bool:
    """Whether a pytest run that includes tests/integration is running on this machine."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            args = cmdline.read_bytes().decode(errors="replace").split("\0")
            if any("pytest" in arg for arg in args) and any(
                arg.rstrip("/") == "tests" or arg.startswith("tests/integration") for arg in args
            ):
                return True
    return False


def _wait_for_quiet(
    options: Options, check: Callable[[], bool] = _integration_tests_running
) -> None:
    """Heavy load makes timing tests fail: start heavy phases only when none run."""
    if not options.wait_for_tests:
        return
    announced = False
    while check():
        if not announced:
            print("waiting for running integration tests to finish...", flush=True)
            announced = True
        time.sleep(5)


if __name__ == "__main__":
    sys.exit(main())
