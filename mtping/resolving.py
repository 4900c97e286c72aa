"""Where a source's events go: its sink as a delivery Target, or the reason there is none.

Two resolvers, one per mode:
- `StatusResolver` (adapter mode, alongside Knative's controller): the controller has
  resolved the sink and written `status.sinkUri`; a source that is not Ready is not fired.
- `SpecResolver` (standalone mode): resolves what needs no lookup — an absolute `sink.uri`, or
  a `ref` to a core v1 Service (`http://<name>.<ns>.svc.<cluster-domain>/`, https when
  `CACerts` is set) plus an optional relative `uri`. Other Addressable kinds fall back to
  `status.sinkUri` until the standalone resolver that watches them lands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urljoin, urlsplit

from mtping.delivery import Target
from mtping.model import PingSourceSpec


@dataclass(frozen=True, slots=True)
class Unresolved:
    reason: str


class Resolver(Protocol):
    def resolve(self, spec: PingSourceSpec) -> Target | Unresolved: ...


class StatusResolver:
    """Knative's adapter contract: fire Ready sources at the sink their status names."""

    def resolve(self, spec: PingSourceSpec) -> Target | Unresolved:
        status = spec.status
        if not status.ready:
            return Unresolved("not Ready in status")
        if not status.sink_uri:
            return Unresolved("status.sinkUri is empty")
        return Target(status.sink_uri, status.sink_ca_certs, status.sink_audience)


@dataclass(frozen=True, slots=True)
class SpecResolver:
    """Resolve from the spec alone where that is possible (see the module docstring)."""

    cluster_domain: str = "cluster.local"

    def resolve(self, spec: PingSourceSpec) -> Target | Unresolved:
        sink = spec.sink
        if sink.ref is None:
            return _target(sink.uri or "", spec)
        if sink.ref.kind == "Service" and sink.ref.api_version == "v1":
            scheme = "https" if sink.ca_certs else "http"
            base = f"{scheme}://{sink.ref.name}.{sink.ref.namespace}.svc.{self.cluster_domain}/"
            return _target(urljoin(base, sink.uri or ""), spec)
        if spec.status.sink_uri:
            return Target(
                spec.status.sink_uri, spec.status.sink_ca_certs, spec.status.sink_audience
            )
        return Unresolved(f"cannot resolve a {sink.ref.kind} sink without its status yet")


def _target(url: str, spec: PingSourceSpec) -> Target | Unresolved:
    if not urlsplit(url).netloc:
        return Unresolved(f"sink URL {url!r} has no host")
    return Target(url, spec.sink.ca_certs, spec.sink.audience)
