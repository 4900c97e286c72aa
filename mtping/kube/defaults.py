"""Keeps the Limits in force equal to the `config-ping-defaults` ConfigMap, as it changes.

One named list-then-watch (fieldSelector metadata.name=config-ping-defaults, which RBAC's
resourceNames allows) in the system namespace. Each round lists (one object, so relisting is
cheaper than resuming) and watches until the server ends the watch; a missing or deleted
ConfigMap means Knative's default, no limit. A value mtping cannot use is logged and the
previous Limits stay, as Knative's config store does. Never raises out of `run`: a broken
apiserver connection must not stop the rest of mtping.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp
from kubernetes_asyncio import watch
from kubernetes_asyncio.client import ApiClient, CoreV1Api
from kubernetes_asyncio.client.exceptions import ApiException

from mtping.kube.watching import Backoff
from mtping.model.defaults import (
    CONFIG_MAP_NAME,
    InvalidDefaults,
    LimitsHolder,
    limits_from_config,
)

log = logging.getLogger(__name__)

WATCH_SECONDS = 300
FAILURES = (ApiException, aiohttp.ClientError, TimeoutError, OSError)


class DefaultsWatcher:
    """Feeds `holder` from the ConfigMap; `load` once at start, then `run` forever."""

    def __init__(
        self, api: ApiClient, *, namespace: str, holder: LimitsHolder, request_timeout: float = 10
    ) -> None:
        self._core = CoreV1Api(api)
        self._namespace = namespace
        self._holder = holder
        self._request_timeout = request_timeout
        self._selector = f"metadata.name={CONFIG_MAP_NAME}"

    async def load(self) -> str:
        """Apply the ConfigMap as it is now; its list's resourceVersion."""
        listing = await self._core.list_namespaced_config_map(
            self._namespace,
            field_selector=self._selector,
            _request_timeout=self._request_timeout,
        )
        items = listing.items or []
        self._apply(items[0].data if items else None)
        return str(listing.metadata.resource_version)

    async def run(self) -> None:
        backoff = Backoff(1.0, 60.0)
        while True:
            try:
                await self._watch(await self.load())
                backoff.reset()
            except FAILURES as error:
                delay = backoff.next_delay()
                log.warning(
                    "%s: watch failed, retrying in %.1fs: %s", CONFIG_MAP_NAME, delay, error
                )
                await asyncio.sleep(delay)

    async def _watch(self, version: str) -> None:
        async with watch.Watch() as stream:
            events = stream.stream(
                self._core.list_namespaced_config_map,
                self._namespace,
                field_selector=self._selector,
                resource_version=version,
                timeout_seconds=WATCH_SECONDS,
            )
            async for event in events:
                self._on_event(event)

    def _on_event(self, event: Mapping[str, Any]) -> None:
        raw = event.get("raw_object") or {}
        if event.get("type") == "DELETED":
            self._apply(None)
        elif event.get("type") in ("ADDED", "MODIFIED"):
            self._apply(raw.get("data"))

    def _apply(self, data: Mapping[str, str] | None) -> None:
        try:
            limits = limits_from_config(data)
        except InvalidDefaults as error:
            log.warning("%s; keeping %s", error, self._holder.current)
            return
        if limits != self._holder.current:
            log.info("%s: data-max-size is now %s", CONFIG_MAP_NAME, _size(limits.max_data_bytes))
            self._holder.current = limits


def _size(limit: int | None) -> str:
    return "unlimited" if limit is None else f"{limit} bytes"
