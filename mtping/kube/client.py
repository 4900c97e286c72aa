"""Connecting to the apiserver: in-cluster service account, or a kubeconfig outside a cluster.

One `ApiClient` per process, shared by everything in `kube/`; never one per source.
"""

from __future__ import annotations

import os

from kubernetes_asyncio import config
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.config import ConfigException

from mtping.kube.errors import KubeError


def _in_cluster() -> bool:
    return "KUBERNETES_SERVICE_HOST" in os.environ


async def connect(kubeconfig: str | None = None) -> ApiClient:
    """Return an API client for `kubeconfig`, else `$KUBECONFIG`, else in-cluster, else ~/.kube."""
    configuration = Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG")
    try:
        if path is None and _in_cluster():
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
        else:
            await config.load_kube_config(
                config_file=path, client_configuration=configuration, persist_config=False
            )
    except (ConfigException, OSError) as error:
        raise KubeError(f"cannot load Kubernetes credentials: {error}") from error
    return ApiClient(configuration)
