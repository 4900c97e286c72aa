"""API discovery: which REST resource (plural) serves a kind, as the apiserver itself says.

Plurals are never guessed from kind names (`Sink` -> `sinks` holds only by convention). One GET
of the group-version's resource list per kind, when a sink of that kind is first referenced.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from mtping.kube.errors import ApiStatusError, ApiUnavailable, KubeError
from mtping.kube.watching import Resource


class NotServed(KubeError):
    """The apiserver serves no such group, version or kind."""


def split_api_version(api_version: str) -> tuple[str, str]:
    """ "v1" -> ("", "v1"); "example.com/v1" -> ("example.com", "v1")."""
    group, _, version = api_version.rpartition("/")
    return group, version


async def discover(
    api: ApiClient, *, group: str, version: str, kind: str, request_timeout: float = 30.0
) -> Resource:
    """The resource serving `kind` in group/version; raises NotServed, or another KubeError."""
    listing = await _resource_list(
        api, group=group, version=version, request_timeout=request_timeout
    )
    for entry in listing.get("resources") or []:
        name = str(entry.get("name", ""))
        if entry.get("kind") == kind and "/" not in name:  # "x/status" are subresources
            return Resource(group=group, version=version, plural=name)
    served = f"{group}/{version}" if group else version
    raise NotServed(f"the apiserver serves no kind {kind} in {served}")


async def _resource_list(
    api: ApiClient, *, group: str, version: str, request_timeout: float
) -> dict[str, Any]:
    path = f"/apis/{group}/{version}" if group else f"/api/{version}"
    try:
        listing: dict[str, Any] = await api.call_api(
            path,
            "GET",
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            response_types_map={200: "object"},
            _return_http_data_only=True,
            _request_timeout=request_timeout,
        )
    except ApiException as error:
        if error.status == 404:
            served = f"{group}/{version}" if group else version
            raise NotServed(f"the apiserver serves no API {served}") from error
        raise ApiStatusError(error.status, str(error.reason)) from error
    except (aiohttp.ClientError, TimeoutError, OSError) as error:
        raise ApiUnavailable(f"apiserver unreachable: {error!r}") from error
    return listing
