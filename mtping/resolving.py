"""Where a source's events go: its sink as a delivery Target, or the reason there is none.

Knative's resolver rules (knative.dev/pkg resolver), as pure functions of the spec and of what
is known about the referenced object:
- an absolute `sink.uri` alone is used as is;
- a `ref` to a core v1 Service is `http://<name>.<ns>.svc.<cluster-domain>/` (https when
  `sink.CACerts` is set); the Service must exist;
- a `ref` to any other kind must be Addressable: `status.addresses[]` (the one named by
  `ref.address`, else the first), else `status.address`; its URL needs a host;
- a relative `sink.uri` is resolved against the ref's URL; `sink.CACerts` and `sink.audience`,
  when set, override the target's own.

Resolvers:
- `StatusResolver` (adapter mode, alongside Knative's controller): the controller has
  resolved the sink and written `status.sinkUri`; a source that is not Ready is not fired.
- `SpecResolver`: what needs no lookup (uri, or a Service assumed to exist); other kinds fall
  back to `status.sinkUri`. Standalone mode uses `mtping.kube.resolving.ClusterResolver`,
  which watches the referenced objects and applies the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from urllib.parse import urljoin, urlsplit

from mtping.delivery import Target
from mtping.model import PingSourceSpec, Sink, SinkRef, SourceKey
from mtping.model.addressable import Address, Addressable
from mtping.model.status import Unresolved

__all__ = [
    "Resolver",
    "SpecResolver",
    "StatusResolver",
    "TrackingResolver",
    "Unresolved",
    "addressable_target",
    "describe_ref",
    "is_service",
    "service_target",
    "uri_target",
]


class Resolver(Protocol):
    def resolve(self, spec: PingSourceSpec) -> Target | Unresolved: ...


@runtime_checkable
class TrackingResolver(Resolver, Protocol):
    """A resolver that remembers which source depends on which object."""

    def forget(self, key: SourceKey) -> None:
        """`key` is gone (or no longer valid): stop tracking what it referred to."""


class StatusResolver:
    """Knative's adapter contract: fire Ready sources at the sink their status names."""

    def resolve(self, spec: PingSourceSpec) -> Target | Unresolved:
        status = spec.status
        if not status.ready:
            return Unresolved("not Ready in status", reason="NotReady")
        if not status.sink_uri:
            return Unresolved("status.sinkUri is empty", reason="NotReady")
        return Target(status.sink_uri, status.sink_ca_certs, status.sink_audience)


@dataclass(frozen=True, slots=True)
class SpecResolver:
    """Resolve from the spec alone where that is possible (see the module docstring)."""

    cluster_domain: str = "cluster.local"

    def resolve(self, spec: PingSourceSpec) -> Target | Unresolved:
        sink = spec.sink
        if sink.ref is None:
            return uri_target(sink)
        if is_service(sink.ref):
            return service_target(sink, sink.ref, self.cluster_domain)
        if spec.status.sink_uri:
            return Target(
                spec.status.sink_uri, spec.status.sink_ca_certs, spec.status.sink_audience
            )
        return Unresolved(f"cannot resolve a {sink.ref.kind} sink without its status yet")


def is_service(ref: SinkRef) -> bool:
    return ref.kind == "Service" and ref.api_version == "v1"


def describe_ref(ref: SinkRef) -> str:
    """How messages name the referenced object: `Service "display" in namespace "team"`."""
    return f'{ref.kind} "{ref.name}" ({ref.api_version}) in namespace "{ref.namespace}"'


def uri_target(sink: Sink) -> Target | Unresolved:
    """An absolute `sink.uri` alone, used as is."""
    url = sink.uri or ""
    if not urlsplit(url).netloc:
        return Unresolved(f"sink URI {url!r} is not an absolute URL with a host")
    return Target(url, sink.ca_certs, sink.audience)


def service_target(sink: Sink, ref: SinkRef, cluster_domain: str) -> Target | Unresolved:
    """A core v1 Service by its cluster DNS name; the caller has checked it exists."""
    scheme = "https" if sink.ca_certs else "http"
    base = Address(url=f"{scheme}://{ref.name}.{ref.namespace}.svc.{cluster_domain}/")
    return _with_overrides(base, sink, ref)


def addressable_target(sink: Sink, ref: SinkRef, target: Addressable) -> Target | Unresolved:
    """The address an Addressable publishes, chosen and checked as Knative does."""
    chosen = _select_address(ref, target)
    if isinstance(chosen, Unresolved):
        return chosen
    if not chosen.url:
        return Unresolved(f"{describe_ref(ref)} has an address without a URL")
    if not urlsplit(chosen.url).netloc:
        return Unresolved(f"{describe_ref(ref)} has address {chosen.url!r}, without a host")
    return _with_overrides(chosen, sink, ref)


def _select_address(ref: SinkRef, target: Addressable) -> Address | Unresolved:
    published = bool(target.addresses) or target.address is not None
    if ref.address and published:
        named = [address for address in target.addresses if address.name == ref.address]
        if named:
            return named[0]
        return Unresolved(
            f"{describe_ref(ref)} has no address named {ref.address!r} in status.addresses"
        )
    if target.addresses:
        return target.addresses[0]
    if target.address is not None:
        return target.address
    return Unresolved(
        f"{describe_ref(ref)} has no address yet (status.address and status.addresses are empty)"
    )


def _with_overrides(base: Address, sink: Sink, ref: SinkRef) -> Target | Unresolved:
    url = base.url or ""
    if sink.uri:
        url = urljoin(url, sink.uri)
        if not urlsplit(url).netloc:
            return Unresolved(f"sink URI {sink.uri!r} resolved against {describe_ref(ref)}")
    return Target(
        url,
        ca_certs=sink.ca_certs or base.ca_certs,
        audience=sink.audience or base.audience,
    )
