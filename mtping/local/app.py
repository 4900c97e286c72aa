"""Lifecycles of the commands that need no cluster: `mtping local` and `mtping display`.

`mtping local` runs exactly the engine of `mtping run` (`lifecycle.build_engine`: registry,
scheduler, dispatcher, sender, event template code), fed by the file Reloader instead of a
watch, with `LocalResolver` instead of a cluster resolver. With `--display` the built-in
display serves on a free loopback port in the same process and is the sink. On SIGINT or
SIGTERM it stops reloading and scheduling, waits for in-flight deliveries (at most
`drain_seconds`; a second signal stops waiting) and returns 0. Unlike `mtping run` it does
not wait out the minute: no replacement pod is taking over.

`mtping display` serves the display until a signal comes.
"""

from __future__ import annotations

import asyncio
import sys
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TextIO

from mtping.console import Console, Style
from mtping.delivery import Sender
from mtping.display import EventPrinter, build_app, serving
from mtping.engine import Engine
from mtping.lifecycle import (
    Stopper,
    build_engine,
    cancel,
    drain,
    source_parser,
    until_stopped,
)
from mtping.local.reporting import report_reload, summary
from mtping.local.resolving import LocalResolver
from mtping.local.watching import POLL_SECONDS, Reloader
from mtping.probes import Probes, build_apps, start_servers
from mtping.settings import ScheduleSettings, ServerSettings, Settings

DISPLAY_HOST = "127.0.0.1"  # the in-process display only needs to hear this process


@dataclass(frozen=True, slots=True)
class LocalOptions:
    paths: tuple[Path, ...]
    sink: str | None = None
    """Send every source's events here (`--sink`); None: each source's own absolute uri."""
    display: bool = False
    """Start the built-in display and use it as the sink (`--display`)."""
    metrics_port: int = 0
    """Prometheus `/metrics` port; 0 disables."""
    default_timezone: str = "UTC"
    poll_seconds: float = POLL_SECONDS
    drain_seconds: float = 10.0


@dataclass(frozen=True, slots=True)
class DisplayOptions:
    host: str = "0.0.0.0"
    port: int = 8080
    as_json: bool = False


async def run_local(
    options: LocalOptions,
    *,
    stopper: Stopper | None = None,
    status: TextIO | None = None,
    events: TextIO | None = None,
) -> int:
    """`mtping local`; `status` gets the reload news (stderr), `events` the display (stdout)."""
    console = Console(status or sys.stderr)
    missing = [str(path) for path in options.paths if not path.exists()]
    if missing:
        console.line(f"mtping local: no such file or folder: {', '.join(missing)}")
        return 2
    stopper = stopper or Stopper().install()
    settings = _settings(options)
    async with Sender(settings.delivery) as sender, AsyncExitStack() as stack:
        sink = options.sink
        if options.display:
            printer = EventPrinter(Console(events or sys.stdout))
            sink = await stack.enter_async_context(
                serving(build_app(printer), host=DISPLAY_HOST, port=0)
            )
            console.line(console.paint(f"display listening on {sink}", Style.DIM))
        resolver = LocalResolver(sink)
        engine = build_engine(settings, sender, resolver)
        reloader = Reloader(
            paths=options.paths,
            parse=source_parser(settings),
            resolver=resolver,
            registry=engine.registry,
            on_reload=partial(report_reload, console),
            interval=options.poll_seconds,
        )
        first = await reloader.load()
        summary(
            console,
            sources=len(reloader.scheduled),
            files=first.files,
            interval=options.poll_seconds,
        )
        await _start_metrics(stack, engine, options.metrics_port, settings.servers.host)
        tasks = [
            asyncio.create_task(reloader.run(), name="reload"),
            asyncio.create_task(engine.run(), name="scheduler"),
        ]
        await until_stopped(stopper, tasks)
        await cancel(tasks)
        await drain(engine, stopper, options.drain_seconds)
    return 0


async def run_display(
    options: DisplayOptions,
    *,
    stopper: Stopper | None = None,
    status: TextIO | None = None,
    events: TextIO | None = None,
) -> int:
    """`mtping display`: print every CloudEvent received until a signal comes."""
    console = Console(status or sys.stderr)
    stopper = stopper or Stopper().install()
    printer = EventPrinter(Console(events or sys.stdout), as_json=options.as_json)
    try:
        async with serving(build_app(printer), host=options.host, port=options.port) as url:
            console.line(console.paint(f"display listening on {url} (Ctrl-C to stop)", Style.DIM))
            await stopper.requested.wait()
    except OSError as error:
        console.line(f"mtping display: cannot listen on {options.host}:{options.port}: {error}")
        return 1
    return 0


def _settings(options: LocalOptions) -> Settings:
    return Settings(
        schedule=ScheduleSettings(default_timezone=options.default_timezone),
        servers=ServerSettings(health_port=0, metrics_port=options.metrics_port),
        drain_seconds=options.drain_seconds,
    )


async def _start_metrics(stack: AsyncExitStack, engine: Engine, port: int, host: str) -> None:
    if not port:
        return
    probes = Probes(last_turn=lambda: engine.scheduler.last_turn)
    for runner in await start_servers(build_apps(probes, health_port=0, metrics_port=port), host):
        stack.push_async_callback(runner.cleanup)
