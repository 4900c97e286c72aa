"""Lifecycle of `mtping run`: start, serve, and stop without losing the minute's ticks.

Startup connects to the apiserver, starts the probes and metrics servers, the watch, the
scheduler and the Event recorder as one task group. On SIGTERM or SIGINT it stops watching
and scheduling (after waiting out the end of the minute past `K_NO_SHUTDOWN_AFTER`, as Knative
does, so a replacement pod does not miss the top-of-minute tick), then drains in-flight
deliveries for at most `drain_seconds`. A second signal skips the waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import UTC, datetime, timedelta
from functools import partial

from mtping.delivery import Sender
from mtping.engine import Engine, FailureReporter
from mtping.kube.client import connect
from mtping.kube.events import EventRecorder
from mtping.kube.watching import watch_forever
from mtping.model import Limits, parse_source
from mtping.probes import Probes, build_apps, start_servers
from mtping.resolving import Resolver, SpecResolver, StatusResolver
from mtping.settings import Mode, Settings

log = logging.getLogger(__name__)

COMPONENT = "pingsource-mt-adapter"


class Stopper:
    """Turns the first signal into a graceful stop and the second into an immediate one."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.forced = asyncio.Event()

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)

    def _on_signal(self, signum: int) -> None:
        if self.requested.is_set():
            log.warning("second %s: stopping now", signal.Signals(signum).name)
            self.forced.set()
        else:
            log.info("%s: stopping after in-flight deliveries", signal.Signals(signum).name)
            self.requested.set()

    async def wait_or_forced(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.forced.wait()


def build_engine(
    settings: Settings, sender: Sender, resolver: Resolver, reporter: FailureReporter | None = None
) -> Engine:
    parse = partial(
        parse_source, default_timezone=settings.schedule.default_timezone, limits=Limits()
    )
    return Engine(
        sender=sender,
        resolver=resolver,
        parse=parse,
        catch_up=timedelta(seconds=settings.schedule.catch_up_seconds),
        per_origin_limit=settings.delivery.per_origin_limit,
        reporter=reporter,
    )


def seconds_to_wait_out_minute(now: datetime, no_shutdown_after: int) -> float:
    """Past second `no_shutdown_after` of a minute, stay until one second into the next."""
    if now.second <= no_shutdown_after:
        return 0.0
    return 61.0 - now.second - now.microsecond / 1e6


async def run(settings: Settings) -> int:
    """`mtping run`: watch PingSources cluster-wide and fire them until a signal comes."""
    stopper = Stopper()
    stopper.install()
    api = await connect(settings.kube.kubeconfig)
    resolver: Resolver = (
        StatusResolver()
        if settings.mode is Mode.ADAPTER
        else SpecResolver(settings.kube.cluster_domain)
    )
    recorder = EventRecorder(
        api,
        component=COMPONENT,
        host=settings.kube.pod_name,
        interval=settings.failure_event_interval,
    )
    async with api, Sender(settings.delivery) as sender:
        engine = build_engine(settings, sender, resolver, recorder)
        probes = Probes(last_turn=lambda: engine.scheduler.last_turn)
        runners = await start_servers(
            build_apps(
                probes,
                health_port=settings.servers.health_port,
                metrics_port=settings.servers.metrics_port,
            ),
            settings.servers.host,
        )

        def mark_synced() -> None:
            probes.synced = True

        tasks = [
            asyncio.create_task(
                watch_forever(api, engine.registry, on_synced=mark_synced), name="watch"
            ),
            asyncio.create_task(engine.run(), name="scheduler"),
            asyncio.create_task(recorder.run(), name="events"),
        ]
        log.info("mtping started in %s mode", settings.mode.value)
        await _until_stopped(stopper, tasks)
        await stopper.wait_or_forced(
            seconds_to_wait_out_minute(datetime.now(UTC), settings.no_shutdown_after)
        )
        await _cancel(tasks)
        if not await engine.dispatcher.drain(
            0 if stopper.forced.is_set() else settings.drain_seconds
        ):
            log.warning("%d events still queued at shutdown", engine.dispatcher.queued)
        await engine.dispatcher.close()
        await recorder.flush()
        for runner in runners:
            await runner.cleanup()
    log.info("mtping stopped")
    return 0


async def _until_stopped(stopper: Stopper, tasks: list[asyncio.Task[None]]) -> None:
    """Wait for a signal; a task that ends on its own is a bug, so it stops the process."""
    stop = asyncio.create_task(stopper.requested.wait())
    done, _ = await asyncio.wait([stop, *tasks], return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    for task in done:
        if task is not stop and task.exception() is not None:
            await _cancel(tasks)
            raise RuntimeError(f"task {task.get_name()} failed") from task.exception()


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
