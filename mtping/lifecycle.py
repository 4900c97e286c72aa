"""What every long-running command shares: signals, the engine's assembly, a bounded drain.

`mtping run` (cluster) and `mtping local` (files) differ only in where sources come from and
where failures are reported; both build the engine here, stop on the first SIGTERM/SIGINT
after draining in-flight deliveries, and stop waiting on the second. Nothing here imports
the Kubernetes client, so local mode never loads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from mtping.delivery import Sender
from mtping.engine import DeliveryObserver, Engine, FailureReporter
from mtping.model import Limits, PingSourceSpec, parse_source
from mtping.per_source import PerSourceMetrics
from mtping.resolving import Resolver
from mtping.settings import Settings
from mtping.sources import SourceObserver

log = logging.getLogger(__name__)

Parse = Callable[[Mapping[str, Any]], PingSourceSpec]


class Stopper:
    """Turns the first signal into a graceful stop and the second into an immediate one."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.forced = asyncio.Event()

    def install(self) -> Stopper:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        return self

    def _on_signal(self, signum: int) -> None:
        if self.requested.is_set():
            log.warning("second %s: stopping now", signal.Signals(signum).name)
            self.forced.set()
        else:
            log.info("%s: stopping after in-flight deliveries", signal.Signals(signum).name)
            self.requested.set()

    async def wait_or_forced(self, seconds: float) -> None:
        """Sleep `seconds`, or less if a second signal comes."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.forced.wait()


def source_parser(settings: Settings, limits: Callable[[], Limits] = Limits) -> Parse:
    """The one validation the loaders, the registry and the admission webhook apply.

    `limits` is read on every call, so a changed config-ping-defaults applies to the next
    object parsed without rebuilding anything.
    """
    timezone = settings.schedule.default_timezone
    return lambda obj: parse_source(obj, default_timezone=timezone, limits=limits())


def build_engine(
    settings: Settings,
    sender: Sender,
    resolver: Resolver,
    reporter: FailureReporter | None = None,
    *,
    observer: SourceObserver | None = None,
    deliveries: DeliveryObserver | None = None,
    limits: Callable[[], Limits] = Limits,
) -> Engine:
    if settings.per_source_metrics:
        observer = deliveries = PerSourceMetrics(observer, deliveries)
    return Engine(
        sender=sender,
        resolver=resolver,
        parse=source_parser(settings, limits),
        catch_up=timedelta(seconds=settings.schedule.catch_up_seconds),
        per_origin_limit=settings.delivery.per_origin_limit,
        reporter=reporter,
        observer=observer,
        deliveries=deliveries,
    )


async def until_stopped(stopper: Stopper, tasks: list[asyncio.Task[None]]) -> None:
    """Wait for a signal; a task that ends on its own is a bug, so it stops everything."""
    stop = asyncio.create_task(stopper.requested.wait())
    done, _ = await asyncio.wait([stop, *tasks], return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    for task in done:
        if task is not stop and not task.cancelled() and task.exception() is not None:
            await cancel(tasks)
            raise RuntimeError(f"task {task.get_name()} failed") from task.exception()


async def cancel(tasks: Sequence[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def drain(engine: Engine, stopper: Stopper, seconds: float) -> None:
    """Let queued deliveries finish for at most `seconds` (none after a second signal)."""
    drained = asyncio.create_task(engine.dispatcher.drain(seconds))
    forced = asyncio.create_task(stopper.forced.wait())
    await asyncio.wait([drained, forced], return_when=asyncio.FIRST_COMPLETED)
    await cancel([drained, forced])
    if engine.dispatcher.queued:
        log.warning("%d events still queued at shutdown", engine.dispatcher.queued)
    await engine.dispatcher.close()
