"""Delivery throughput: N events due in the same second, through Engine -> Dispatcher -> Sender.

Not a test: it prints figures. It starts its own sink in a child process (nginx with one worker
answering 202, or an aiohttp server answering 202), loads N PingSources into a real Engine
(registry, scheduler heap, dispatcher, sender: the production path, no apiserver) with one
schedule that fires a few seconds later, and reports, once every event has an outcome:

- events/s: N over the time from the first send start to the last outcome;
- lateness of the send start (what `mtping_tick_lateness_seconds` observes) and of the
  outcome, p50/p99/max, relative to the scheduled instant;
- the client process's CPU seconds over the burst;
- what the sink counted: requests and distinct `ce-id`s (every event delivered, none twice).

The sink runs pinned to the last CPU and the client to the others when there are 2 or more.
Run from the repository root:

    .venv/bin/python bench/delivery_throughput.py --sink nginx --events 10000
    .venv/bin/python bench/delivery_throughput.py --sink aiohttp --events 10000
    .venv/bin/python bench/delivery_throughput.py --sink nginx --http-client aiohttp
    .venv/bin/python bench/delivery_throughput.py --sink nginx --profile /tmp/profile.txt
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from mtping import delivery, metrics
from mtping.delivery import DeliveryPolicy, Outcome, Sender
from mtping.delivery.dispatching import Job
from mtping.engine import Engine
from mtping.model import parse_source
from mtping.resolving import SpecResolver
from mtping.schedule.heap import DueTick
from mtping.sources import Firing

BODY = '{"message": "Hello world!"}'
# A checkout from before the lean client has only aiohttp, and no choice to make: the script
# measures it too (PYTHONPATH=<that checkout>), as `--http-client aiohttp`.
HTTP_CLIENTS: tuple[str, ...] = getattr(delivery, "HTTP_CLIENTS", ("aiohttp",))

NGINX_CONF = """\
worker_processes 1;
daemon off;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 8192; }}
http {{
    log_format ids '$http_ce_id';
    access_log {dir}/ids.log ids buffer=256k flush=1s;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 202; }}
    }}
}}
"""

# The aiohttp sink: counts requests and distinct ce-ids; GET /stats answers "requests ids".
AIOHTTP_SINK = """\
import asyncio, sys
from aiohttp import web
try:
    import uvloop
except ImportError:
    uvloop = None
seen, count = set(), [0]
async def event(request):
    await request.read()
    count[0] += 1
    seen.add(request.headers.get("ce-id"))
    return web.Response(status=202)
async def stats(request):
    return web.Response(text=f"{count[0]} {len(seen)}")
app = web.Application()
app.router.add_get("/stats", stats)
app.router.add_post("/{tail:.*}", event)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None,
            loop=uvloop.new_event_loop() if uvloop else None)
"""


class GcWatch:
    """Counts the cyclic garbage collector's runs per generation and the time they took."""

    def __init__(self) -> None:
        self.runs = [0, 0, 0]
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.runs[info["generation"]] += 1
            self.seconds += time.perf_counter() - self._started

    def __str__(self) -> str:
        runs = "/".join(map(str, self.runs))
        return f"{runs} runs of gen 0/1/2, {self.seconds * 1000:.0f} ms"


@dataclass
class Tally:
    """What the bench records per event: wall-clock times, relative to nothing yet."""

    starts: list[float] = field(default_factory=list)
    """Send-start lateness in seconds (what the lateness histogram observes)."""
    ends: list[float] = field(default_factory=list)
    """Wall-clock time of each outcome."""
    failed: list[Outcome] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    expected: int = 0
    fire_seconds: float = 0.0
    gc: GcWatch = field(default_factory=GcWatch)
    """Time the engine spent turning due ticks into queued jobs."""


class _LatenessRecorder:
    """Stands in for the lateness histogram so every observation is kept, not bucketed."""

    def __init__(self, into: list[float]) -> None:
        self._into = into

    def observe(self, value: float) -> None:
        self._into.append(value)


class RecordingEngine(Engine):
    """The production Engine, noting when each outcome arrives."""

    tally: Tally

    def _fire(self, tick: DueTick[Firing], now: datetime) -> None:
        started = time.perf_counter()
        super()._fire(tick, now)
        self.tally.fire_seconds += time.perf_counter() - started

    def _on_outcome(self, job: Job, outcome: Outcome) -> None:
        self.tally.ends.append(time.time())
        if not outcome.delivered:
            self.tally.failed.append(outcome)
        super()._on_outcome(job, outcome)
        if len(self.tally.ends) >= self.tally.expected:
            self.tally.done.set()


@dataclass(frozen=True, slots=True)
class SinkProcess:
    url: str
    stats: Callable[[], tuple[int, int]]
    """(requests, distinct ce-ids) the sink has seen."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the sink exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise SystemExit("the sink never listened")


def pin(pid: int, cpus: set[int]) -> None:
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setaffinity(pid, cpus)


def sink_cpu() -> set[int] | None:
    count = os.cpu_count() or 1
    return {count - 1} if count >= 2 else None


@contextlib.contextmanager
def nginx_sink() -> Iterator[SinkProcess]:
    binary = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if binary is None:
        raise SystemExit("nginx is not installed: apt-get install -y nginx-light")
    with tempfile.TemporaryDirectory(prefix="bench-nginx-") as directory:
        port = free_port()
        conf = Path(directory, "nginx.conf")
        conf.write_text(NGINX_CONF.format(dir=directory, port=port))
        process = subprocess.Popen([binary, "-c", str(conf), "-p", directory])
        try:
            wait_listening(port, process)
            cpus = sink_cpu()
            if cpus:
                for pid in _children_and(process.pid):
                    pin(pid, cpus)

            def stats() -> tuple[int, int]:
                os.kill(process.pid, signal.SIGUSR1)  # reopening the logs flushes their buffer
                time.sleep(1.2)
                ids = Path(directory, "ids.log").read_text().split()
                return len(ids), len(set(ids))

            yield SinkProcess(url=f"http://127.0.0.1:{port}/events", stats=stats)
        finally:
            process.terminate()
            process.wait(10)


def _children_and(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    time.sleep(0.2)
    found = children.read_text().split() if children.exists() else []
    return [pid, *map(int, found)]


@contextlib.contextmanager
def aiohttp_sink() -> Iterator[SinkProcess]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", AIOHTTP_SINK, str(port)])
    try:
        wait_listening(port, process)
        cpus = sink_cpu()
        if cpus:
            pin(process.pid, cpus)

        def stats() -> tuple[int, int]:
            with socket.create_connection(("127.0.0.1", port), 5) as conn:
                conn.sendall(b"GET /stats HTTP/1.0\r\n\r\n")
                reply = b""
                while chunk := conn.recv(4096):
                    reply += chunk
            requests, ids = reply.split(b"\r\n\r\n", 1)[1].split()
            return int(requests), int(ids)

        yield SinkProcess(url=f"http://127.0.0.1:{port}/events", stats=stats)
    finally:
        process.terminate()
        process.wait(10)


def ping_sources(count: int, *, second: int, url: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "sources.knative.dev/v1",
            "kind": "PingSource",
            "metadata": {
                "namespace": f"tenant-{index % 100}",
                "name": f"ping-{index}",
                "uid": str(uuid.uuid4()),
                "generation": 1,
                "resourceVersion": "1",
            },
            "spec": {
                "schedule": f"{second} * * * * *",
                "contentType": "application/json",
                "data": BODY,
                "sink": {"uri": url},
            },
        }
        for index in range(count)
    ]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


async def burst(args: argparse.Namespace, sink: SinkProcess) -> None:
    policy = DeliveryPolicy(
        attempt_timeout=10.0,
        per_origin_limit=args.per_origin,
        total_limit=max(1024, args.per_origin),
        **client_choice(args.http_client),
    )
    tally = Tally(expected=args.events)
    metrics.TICK_LATENESS = _LatenessRecorder(tally.starts)  # type: ignore[assignment]
    lead = args.lead if args.lead is not None else 2.0 + args.events / 5_000
    due = datetime.fromtimestamp(math.ceil(time.time() + lead), UTC)
    async with Sender(policy) as sender:
        engine = RecordingEngine(
            sender=sender,
            resolver=SpecResolver(),
            parse=partial(parse_source),
            catch_up=timedelta(seconds=10),
            per_origin_limit=policy.per_origin_limit,
        )
        engine.tally = tally
        loaded = time.perf_counter()
        engine.registry.replace_all(ping_sources(args.events, second=due.second, url=sink.url))
        print(f"loaded {len(engine.registry)} sources in {time.perf_counter() - loaded:.2f}s")
        if datetime.now(UTC) >= due:
            raise SystemExit("loading took longer than --lead; raise it")
        if args.gc_freeze:
            gc.freeze()
        scheduler = asyncio.create_task(engine.run())
        profiler = start_profiler(args)
        await asyncio.sleep(max(0.0, due.timestamp() - time.time() - 0.05))
        gc.callbacks.append(tally.gc)
        cpu_before = cpu_seconds()
        try:
            async with asyncio.timeout(60):
                await tally.done.wait()
        finally:
            cpu_after = cpu_seconds()
            gc.callbacks.remove(tally.gc)
            cpu_used = (cpu_after[0] - cpu_before[0], cpu_after[1] - cpu_before[1])
            stop_profiler(profiler, args)
            scheduler.cancel()
            await asyncio.gather(scheduler, return_exceptions=True)
            await engine.dispatcher.close()
    report(args, tally, due.timestamp(), cpu_used, sink)


def cpu_seconds() -> tuple[float, float]:
    """(user, system) CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def start_profiler(args: argparse.Namespace) -> Any:
    """pyinstrument in-process (--profile), or py-spy sampling this process (--spy)."""
    if args.spy:
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        command = [spy, "record", "--pid", str(os.getpid()), "--rate", "1000"]
        return subprocess.Popen(
            [*command, "--format", "raw", "--output", args.spy, "--nonblocking"]
        )
    if not args.profile:
        return None
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001, async_mode="disabled")
    profiler.start()
    return profiler


def stop_profiler(profiler: Any, args: argparse.Namespace) -> None:
    if isinstance(profiler, subprocess.Popen):
        profiler.send_signal(signal.SIGINT)
        profiler.wait(30)
        print(f"py-spy samples (collapsed stacks) written to {args.spy}")
    elif profiler is not None:
        profiler.stop()
        text = profiler.output_text(unicode=False, color=False, show_all=False)
        Path(args.profile).write_text(text)
        print(f"profile written to {args.profile}")


def report(
    args: argparse.Namespace,
    tally: Tally,
    due: float,
    cpu_used: tuple[float, float],
    sink: SinkProcess,
) -> None:
    first_start = due + min(tally.starts)
    span = max(tally.ends) - first_start
    ends = [end - due for end in tally.ends]
    requests, distinct = sink.stats()
    client = args.http_client
    print(
        f"sink={args.sink} loop={args.loop} http-client={client} events={args.events} "
        f"per-origin={args.per_origin}"
    )
    rows = [
        (
            "throughput",
            f"{args.events / span:9.0f} events/s ({span:.3f}s first start to last outcome)",
        ),
        ("ticks to jobs", f"{tally.fire_seconds * 1000:.1f} ms (Engine._fire, all events)"),
        ("send start", spread(tally.starts)),
        ("outcome", spread(ends)),
        ("client CPU", cpu_text(cpu_used, span)),
        ("garbage coll.", str(tally.gc)),
        ("outcomes", f"{len(tally.ends) - len(tally.failed)} delivered, {len(tally.failed)} not"),
        ("sink saw", f"{requests} requests, {distinct} distinct ce-ids"),
    ]
    for name, text in rows:
        print(f"  {name:<14}  {text}")
    for outcome in tally.failed[:5]:
        print(f"  failed: {outcome}")


def cpu_text(cpu_used: tuple[float, float], span: float) -> str:
    user, system = cpu_used
    share = (user + system) / span * 100
    return f"{user:.2f}s user + {system:.2f}s system ({share:.0f}% of one core over the burst)"


def client_choice(http_client: str) -> dict[str, Any]:
    """The DeliveryPolicy argument choosing the client, where there is a choice."""
    return {"http_client": http_client} if "HTTP_CLIENTS" in vars(delivery) else {}


def spread(seconds: list[float]) -> str:
    """p50, p99 and max in milliseconds."""
    p50, p99 = percentile(seconds, 0.5) * 1000, percentile(seconds, 0.99) * 1000
    return f"p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  max {max(seconds) * 1000:7.1f} ms"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sink", choices=["nginx", "aiohttp"], default="nginx")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--per-origin", type=int, default=64, help="per-sink concurrency")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--http-client", choices=HTTP_CLIENTS, default=HTTP_CLIENTS[0])
    parser.add_argument("--lead", type=float, default=None, help="seconds from load to due")
    parser.add_argument("--profile", metavar="PATH", help="pyinstrument text profile of the burst")
    parser.add_argument(
        "--gc-freeze", action="store_true", help="gc.freeze() after loading the sources"
    )
    parser.add_argument("--spy", metavar="PATH", help="py-spy samples of the burst (collapsed)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    client_cpus = set(range((os.cpu_count() or 1) - 1)) if (os.cpu_count() or 1) >= 2 else None
    if client_cpus:
        pin(0, client_cpus)
    loop_factory = None
    if args.loop == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    sink_context = nginx_sink() if args.sink == "nginx" else aiohttp_sink()
    with sink_context as sink, asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(burst(args, sink))


if __name__ == "__main__":
    main()
