"""The HTTP endpoints operators rely on: `/health`, `/readiness` and Prometheus `/metrics`.

Served by aiohttp on the same event loop as the scheduler, so a wedged loop fails the probes
(the kubelet restarts the pod). Liveness also fails when the loop answers but the scheduler
task has stopped turning. Readiness waits for the first full list of PingSources.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mtping.metrics import REGISTRY

# The scheduler turns at least once a second; ten missed turns means it is stuck.
STALL_SECONDS = 10.0


class Probes:
    def __init__(self, *, last_turn: Callable[[], float]) -> None:
        self._last_turn = last_turn
        self.synced = False

    async def health(self, _: web.Request) -> web.Response:
        stalled_for = time.monotonic() - self._last_turn()
        if stalled_for > STALL_SECONDS:
            return web.Response(status=503, text=f"scheduler stalled for {stalled_for:.0f}s\n")
        return web.Response(text="ok\n")

    async def readiness(self, _: web.Request) -> web.Response:
        if not self.synced:
            return web.Response(status=503, text="waiting for the first list of PingSources\n")
        return web.Response(text="ok\n")


async def serve_metrics(_: web.Request) -> web.Response:
    return web.Response(
        body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


def build_apps(
    probes: Probes, *, health_port: int, metrics_port: int
) -> dict[int, web.Application]:
    """One aiohttp app per port (the same app when both ports are equal); 0 disables a port."""
    apps: dict[int, web.Application] = {}
    if health_port:
        app = apps.setdefault(health_port, web.Application())
        app.router.add_get("/health", probes.health)
        app.router.add_get("/readiness", probes.readiness)
    if metrics_port:
        app = apps.setdefault(metrics_port, web.Application())
        app.router.add_get("/metrics", serve_metrics)
    return apps


async def start_servers(apps: dict[int, web.Application], host: str) -> list[web.AppRunner]:
    runners = []
    for port, app in apps.items():
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        runners.append(runner)
    return runners
