"""Helpers of the integration tests: PingSources through the real apiserver, sink matchers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.harness.controlplane import ControlPlane
from tests.harness.sinks import Received

GROUP = "sources.knative.dev"
MERGE_PATCH = "application/merge-patch+json"


def pingsource_path(namespace: str, name: str = "", *, version: str = "v1") -> str:
    base = f"/apis/{GROUP}/{version}/namespaces/{namespace}/pingsources"
    return f"{base}/{name}" if name else base


def create_source(
    plane: ControlPlane, namespace: str, name: str, spec: dict[str, Any], *, version: str = "v1"
) -> dict[str, Any]:
    body = {
        "apiVersion": f"{GROUP}/{version}",
        "kind": "PingSource",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    return plane.rest.request("POST", pingsource_path(namespace, version=version), body=body)


def patch_spec(plane: ControlPlane, namespace: str, name: str, spec: dict[str, Any]) -> None:
    plane.rest.request(
        "PATCH", pingsource_path(namespace, name), body={"spec": spec}, content_type=MERGE_PATCH
    )


def mark_ready(plane: ControlPlane, namespace: str, name: str, sink_uri: str) -> None:
    """Write the status Knative's controller would: Ready, with the resolved sink."""
    status = {
        "status": {
            "sinkUri": sink_uri,
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ],
        }
    }
    plane.rest.request(
        "PATCH", pingsource_path(namespace, name) + "/status", body=status, content_type=MERGE_PATCH
    )


def count_from(name: str, minimum: int) -> Callable[[list[Received]], bool]:
    return lambda received: (
        sum(1 for r in received if r.headers["ce-source"].endswith(f"/{name}")) >= minimum
    )
