"""What standalone mode adds to `mtping run`: its own sink resolution and PingSource status.

One object bundles the `ClusterResolver` (watches referenced sinks), the `StatusWriter`
(publishes conditions, sinkUri and lastDelivery) and the recorder of Ready-transition Events,
so `app.run` wires standalone mode in a few lines. Adapter mode uses none of it: there,
Knative's controller resolves sinks and owns the status.
"""

from __future__ import annotations

import asyncio

from kubernetes_asyncio.client import ApiClient

from mtping.kube.events import EventRecorder
from mtping.kube.resolving import ClusterResolver
from mtping.kube.status import ApiStatusClient, StatusWriter
from mtping.settings import Settings
from mtping.sources import SourceRegistry

# Transitions are rare per source; a second lets a quick flap aggregate into one Event.
TRANSITION_EVENT_INTERVAL = 1.0


class Standalone:
    def __init__(self, api: ApiClient, settings: Settings, *, component: str) -> None:
        self.resolver = ClusterResolver(api, cluster_domain=settings.kube.cluster_domain)
        self.notes = EventRecorder(
            api,
            component=component,
            host=settings.kube.pod_name,
            interval=TRANSITION_EVENT_INTERVAL,
        )
        self.writer = StatusWriter(
            ApiStatusClient(api),
            notes=self.notes,
            delivery_interval=settings.status.delivery_interval,
            delivery_refresh=settings.status.delivery_refresh,
        )

    def attach(self, registry: SourceRegistry) -> None:
        """Changes of referenced sinks re-resolve the registry's sources."""
        self.resolver.subscribe(registry.reresolve)

    def tasks(self) -> list[asyncio.Task[None]]:
        return [
            asyncio.create_task(self.resolver.run(), name="sink watches"),
            asyncio.create_task(self.writer.run(), name="status writer"),
            asyncio.create_task(self.notes.run(), name="transition events"),
        ]

    async def close(self) -> None:
        await self.notes.flush()
