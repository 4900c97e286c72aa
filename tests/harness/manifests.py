"""Apply YAML manifests to the harness's apiserver with server-side apply (no kubectl).

Its job: turn `apiVersion`/`kind` into a REST path through the apiserver's own discovery and
PATCH each object with `application/apply-patch+yaml` (idempotent: create or update). It must
never guess plural names: an unknown kind is an error.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.harness.rest import APPLY_PATCH, RestClient

FIELD_MANAGER = "mtping-harness"


@dataclass(frozen=True, slots=True)
class Resource:
    """Where objects of one kind live in the REST API."""

    group_version_path: str
    plural: str
    namespaced: bool


def load_manifests(path: Path) -> list[dict[str, Any]]:
    """Every object in the YAML file at `path` (multi-document; `kind: List` flattened)."""
    objects: list[dict[str, Any]] = []
    for document in yaml.safe_load_all(path.read_text()):
        if not document:
            continue
        if document.get("kind") == "List":
            objects.extend(document.get("items", []))
        else:
            objects.append(document)
    return objects


def group_version_path(api_version: str) -> str:
    """'/api/v1' for the core group, '/apis/<group>/<version>' for the others."""
    return f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"


class Applier:
    """Server-side applies objects, resolving kinds via discovery (cached per group/version)."""

    def __init__(self, rest: RestClient) -> None:
        self._rest = rest
        self._discovered: dict[str, list[dict[str, Any]]] = {}

    def apply(self, obj: dict[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        """Create or update `obj`; namespaced kinds default to `namespace` (else 'default')."""
        resource = self.resource_for(obj["apiVersion"], obj["kind"])
        body = _with_namespace(obj, resource, namespace)
        path = object_path(resource, body["metadata"]["name"], body["metadata"].get("namespace"))
        query = urllib.parse.urlencode({"fieldManager": FIELD_MANAGER, "force": "true"})
        return self._rest.request("PATCH", f"{path}?{query}", body=body, content_type=APPLY_PATCH)

    def apply_file(self, path: Path, *, namespace: str | None = None) -> list[dict[str, Any]]:
        """Apply every object of the manifest file at `path`, in file order."""
        return [self.apply(obj, namespace=namespace) for obj in load_manifests(path)]

    def resource_for(self, api_version: str, kind: str) -> Resource:
        """The REST resource serving `kind` in `api_version`, as discovery reports it."""
        for entry in self._resources(api_version):
            if entry["kind"] == kind and "/" not in entry["name"]:
                return Resource(
                    group_version_path=group_version_path(api_version),
                    plural=entry["name"],
                    namespaced=bool(entry["namespaced"]),
                )
        raise LookupError(f"the apiserver serves no kind {kind!r} in {api_version!r}")

    def _resources(self, api_version: str) -> list[dict[str, Any]]:
        if api_version not in self._discovered:
            listing = self._rest.get(group_version_path(api_version))
            self._discovered[api_version] = listing.get("resources", [])
        return self._discovered[api_version]


def object_path(resource: Resource, name: str, namespace: str | None) -> str:
    """REST path of one object (namespace ignored for cluster-scoped kinds)."""
    return f"{collection_path(resource, namespace)}/{name}"


def collection_path(resource: Resource, namespace: str | None) -> str:
    """REST path of a collection of `resource` objects, in `namespace` when namespaced."""
    if resource.namespaced and namespace:
        return f"{resource.group_version_path}/namespaces/{namespace}/{resource.plural}"
    return f"{resource.group_version_path}/{resource.plural}"


def _with_namespace(
    obj: dict[str, Any], resource: Resource, namespace: str | None
) -> dict[str, Any]:
    if not resource.namespaced:
        return obj
    metadata = dict(obj["metadata"])
    metadata.setdefault("namespace", namespace or "default")
    return {**obj, "metadata": metadata}
