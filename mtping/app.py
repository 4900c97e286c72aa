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
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kubernetes_asyncio.client import ApiClient

from mtping.delivery import Sender
from mtping.engine import Engine
from mtping.kube.client import connect
from mtping.kube.defaults import FAILURES as DEFAULTS_FAILURES
from mtping.kube.defaults import DefaultsWatcher
from mtping.kube.events import EventRecorder
from mtping.kube.standalone import Standalone
from mtping.kube.watching import watch_forever
from mtping.kube.webhook import start_webhook
from mtping.lifecycle import Stopper, build_engine, cancel, drain, source_parser, until_stopped
from mtping.model.defaults import LimitsHolder
from mtping.probes import Probes, build_apps, start_servers
from mtping.resolving import Resolver, StatusResolver
from mtping.settings import Mode, Settings
from mtping.webhook import WebhookServer

log = logging.getLogger(__name__)

COMPONENT = "pingsource-mt-adapter"
# Startup waits this long for config-ping-defaults and the webhook's certificate, then goes on
# (both keep retrying): neither may keep the sources that are fine from firing.
STARTUP_WAIT_SECONDS = 15.0


def seconds_to_wait_out_minute(now: datetime, no_shutdown_after: int) -> float:
    """Past second `no_shutdown_after` of a minute, stay until one second into the next."""
    if now.second <= no_shutdown_after:
        return 0.0
    return 61.0 - now.second - now.microsecond / 1e6


async def run(settings: Settings) -> int:
    """`mtping run`: watch PingSources cluster-wide and fire them until a signal comes."""
    stopper = Stopper().install()
    api = await connect(settings.kube.kubeconfig)
    async with api, Sender(settings.delivery) as sender:
        parts = await _assemble(api, sender, settings)
        probes = Probes(last_turn=lambda: parts.engine.scheduler.last_turn)
        apps = build_apps(
            probes,
            health_port=settings.servers.health_port,
            metrics_port=settings.servers.metrics_port,
        )
        runners = await start_servers(apps, settings.servers.host)
        tasks = [*parts.tasks, *_start(api, parts, probes)]
        log.info("mtping started in %s mode", settings.mode.value)
        await until_stopped(stopper, tasks)
        # Ticks keep firing while we wait out the minute, so its top-of-minute tick is sent.
        await stopper.wait_or_forced(
            seconds_to_wait_out_minute(datetime.now(UTC), settings.no_shutdown_after)
        )
        await cancel(tasks)
        await parts.close(stopper, settings.drain_seconds)
        for runner in runners:
            await runner.cleanup()
    log.info("mtping stopped")
    return 0


@dataclass
class _Parts:
    """Everything `run` assembles around the engine, and how to close it in order."""

    engine: Engine
    recorder: EventRecorder
    defaults: DefaultsWatcher
    standalone: Standalone | None
    webhook: WebhookServer | None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    """Started during assembly (the webhook must serve before the first list)."""

    async def close(self, stopper: Stopper, drain_seconds: float) -> None:
        if self.webhook is not None:
            await self.webhook.close()
        await drain(self.engine, stopper, drain_seconds)
        await self.recorder.flush()
        if self.standalone is not None:
            await self.standalone.close()


async def _assemble(api: ApiClient, sender: Sender, settings: Settings) -> _Parts:
    # Standalone mode resolves sinks and writes status itself; adapter mode leaves both to
    # Knative's controller.
    standalone = (
        None if settings.mode is Mode.ADAPTER else Standalone(api, settings, component=COMPONENT)
    )
    resolver: Resolver = StatusResolver() if standalone is None else standalone.resolver
    writer = None if standalone is None else standalone.writer
    recorder = EventRecorder(
        api,
        component=COMPONENT,
        host=settings.kube.pod_name,
        interval=settings.failure_event_interval,
    )
    limits = LimitsHolder()
    defaults = DefaultsWatcher(api, namespace=settings.kube.system_namespace, holder=limits)
    await _load_defaults(defaults)
    engine = build_engine(
        settings, sender, resolver, recorder, limits=limits.get, observer=writer, deliveries=writer
    )
    if standalone is not None:
        standalone.attach(engine.registry)
    parts = _Parts(engine, recorder, defaults, standalone, _webhook_server(settings, limits))
    if parts.webhook is not None:
        parts.tasks.append(
            await start_webhook(
                api,
                settings=settings.webhook,
                namespace=settings.kube.system_namespace,
                server=parts.webhook,
                wait=STARTUP_WAIT_SECONDS,
            )
        )
    return parts


def _start(api: ApiClient, parts: _Parts, probes: Probes) -> list[asyncio.Task[None]]:
    def mark_synced() -> None:
        probes.synced = True

    watch = watch_forever(api, parts.engine.registry, on_synced=mark_synced)
    return [
        *(parts.standalone.tasks() if parts.standalone is not None else []),
        asyncio.create_task(parts.defaults.run(), name="defaults"),
        asyncio.create_task(watch, name="watch"),
        asyncio.create_task(parts.engine.run(), name="scheduler"),
        asyncio.create_task(parts.recorder.run(), name="events"),
    ]


async def _load_defaults(defaults: DefaultsWatcher) -> None:
    try:
        async with asyncio.timeout(STARTUP_WAIT_SECONDS):
            await defaults.load()
    except DEFAULTS_FAILURES as error:
        log.warning("config-ping-defaults not read yet, no data-max-size meanwhile: %s", error)


def _webhook_server(settings: Settings, limits: LimitsHolder) -> WebhookServer | None:
    if not settings.webhook.port:
        return None
    return WebhookServer(
        parse=source_parser(settings, limits.get),
        host=settings.servers.host,
        port=settings.webhook.port,
    )
