"""Discovery: the plural serving a kind comes from the apiserver's resource list, never a guess."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from kubernetes_asyncio.client import ApiClient

from mtping.kube.discovery import NotServed, discover, split_api_version
from mtping.kube.errors import ApiStatusError
from mtping.kube.watching import Resource
from tests.unit.kube.conftest import client_for

RESOURCES = {
    "/api/v1": [
        {"name": "services", "kind": "Service", "namespaced": True},
        {"name": "services/status", "kind": "Service", "namespaced": True},
    ],
    "/apis/example.com/v1": [
        {"name": "addressables/status", "kind": "Sink", "namespaced": True},
        {"name": "addressables", "kind": "Sink", "namespaced": True},
    ],
}


@pytest.fixture
async def discovery() -> AsyncIterator[ApiClient]:
    async def listing(request: web.Request) -> web.Response:
        if request.path == "/apis/forbidden.example.com/v1":
            return web.json_response({"kind": "Status", "code": 403}, status=403)
        if request.path not in RESOURCES:
            return web.json_response({"kind": "Status", "code": 404}, status=404)
        return web.json_response({"kind": "APIResourceList", "resources": RESOURCES[request.path]})

    app = web.Application()
    app.router.add_get("/{path:.*}", listing)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    async with client_for(f"http://127.0.0.1:{runner.addresses[0][1]}") as api:
        yield api
    await runner.cleanup()


@pytest.mark.parametrize(
    ("api_version", "kind", "expected"),
    [
        ("v1", "Service", Resource("", "v1", "services")),
        ("example.com/v1", "Sink", Resource("example.com", "v1", "addressables")),
    ],
)
async def test_the_plural_is_the_one_the_apiserver_lists_for_the_kind(
    discovery: ApiClient, api_version: str, kind: str, expected: Resource
) -> None:
    group, version = split_api_version(api_version)

    assert await discover(discovery, group=group, version=version, kind=kind) == expected


@pytest.mark.parametrize(
    ("group", "kind", "message"),
    [
        ("example.com", "Broker", "serves no kind Broker in example.com/v1"),
        ("missing.example.com", "Sink", "serves no API missing.example.com/v1"),
    ],
)
async def test_an_unknown_group_or_kind_is_not_served(
    discovery: ApiClient, group: str, kind: str, message: str
) -> None:
    with pytest.raises(NotServed, match=message):
        await discover(discovery, group=group, version="v1", kind=kind)


async def test_other_refusals_are_status_errors(discovery: ApiClient) -> None:
    with pytest.raises(ApiStatusError) as refused:
        await discover(discovery, group="forbidden.example.com", version="v1", kind="Sink")

    assert refused.value.status == 403
