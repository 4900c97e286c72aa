"""Lifecycle of `mtping run`: start, serve, and stop without losing the minute's ticks.

Startup connects to the apiserver, starts the probes and metrics servers, the watch, the
scheduler and the Event recorder as one task group. On SIGTERM or SIGINT it stops watching
and scheduling (after waiting out the end of the minute past `K_NO_SHUTDOWN_AFTER`, as Knative
does, so a replacement pod does not miss the top-of-minute tick), then drains in-flight
deliveries for at most `drain_seconds`. A second signal skips the waiting.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from mtping.delivery import Sender
from mtping.kube.client import connect
from mtping.kube.events import EventRecorder
from mtping.kube.watching import watch_forever
from mtping.lifecycle import Stopper, build_engine, cancel, drain, until_stopped
from mtping.probes import Probes, build_apps, start_servers
from mtping.resolving import Resolver, SpecResolver, StatusResolver
from mtping.settings import Mode, Settings

log = logging.getLogger(__name__)

COMPONENT = "pingsource-mt-adapter"


def seconds_to_wait_out_minute(now: datetime, no_shutdown_after: int) -> float:
    """Past second `no_shutdown_after` of a minute, stay until one second into the next."""
    if now.second <= no_shutdown_after:
        return 0.0
    return 61.0 - now.second - now.microsecond / 1e6


async def run(settings: Settings) -> int:
    """`mtping run`: watch PingSources cluster-wide and fire them until a signal comes."""
    stopper = Stopper().install()
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
        await until_stopped(stopper, tasks)
        # Ticks keep firing while we wait out the minute, so its top-of-minute tick is sent.
        await stopper.wait_or_forced(
            seconds_to_wait_out_minute(datetime.now(UTC), settings.no_shutdown_after)
        )
        await cancel(tasks)
        await drain(engine, stopper, settings.drain_seconds)
        await recorder.flush()
        for runner in runners:
            await runner.cleanup()
    log.info("mtping stopped")
    return 0
