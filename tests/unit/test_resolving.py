"""Knative's sink resolution rules, as pure functions of the spec and the target's addresses."""

from __future__ import annotations

import pytest

from mtping.delivery import Target
from mtping.model import Sink, SinkRef
from mtping.model.addressable import Address, Addressable, read_addressable
from mtping.resolving import Unresolved, addressable_target, service_target, uri_target

SERVICE = SinkRef("v1", "Service", "display", "team")
BROKER = SinkRef("eventing.knative.dev/v1", "Broker", "default", "team")
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def sink(ref: SinkRef | None = None, uri: str | None = None, **kw: str) -> Sink:
    return Sink(ref=ref, uri=uri, ca_certs=kw.get("ca_certs"), audience=kw.get("audience"))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (sink(SERVICE), Target("http://display.team.svc.cluster.local/")),
        (sink(SERVICE, "/hooks/a"), Target("http://display.team.svc.cluster.local/hooks/a")),
        (sink(SERVICE, "hooks?x=1"), Target("http://display.team.svc.cluster.local/hooks?x=1")),
        (
            sink(SERVICE, ca_certs=PEM, audience="aud"),
            Target("https://display.team.svc.cluster.local/", PEM, "aud"),
        ),
    ],
)
def test_a_service_is_its_cluster_dns_name(given: Sink, expected: Target) -> None:
    assert given.ref is not None
    assert service_target(given, given.ref, "cluster.local") == expected


def test_the_cluster_domain_is_configurable() -> None:
    resolved = service_target(sink(SERVICE), SERVICE, "corp.internal")

    assert resolved == Target("http://display.team.svc.corp.internal/")


def test_an_absolute_uri_alone_is_used_as_is() -> None:
    given = sink(uri="https://hooks.example/p?q=1", ca_certs=PEM, audience="a")

    assert uri_target(given) == Target("https://hooks.example/p?q=1", PEM, "a")
    assert isinstance(uri_target(sink(uri="/relative")), Unresolved)


def addressable(*addresses: Address, single: Address | None = None) -> Addressable:
    return Addressable(address=single, addresses=addresses)


HTTP = Address("http://broker-ingress.knative-eventing.svc/team/default", name="http")
HTTPS = Address(
    "https://broker-ingress.knative-eventing.svc/team/default",
    name="https",
    ca_certs="broker CA",
    audience="broker-aud",
)


@pytest.mark.parametrize(
    ("ref", "target", "expected"),
    [
        (BROKER, addressable(single=HTTP), Target(HTTP.url or "")),
        (
            BROKER,
            addressable(HTTPS, HTTP, single=HTTP),
            Target(HTTPS.url or "", "broker CA", "broker-aud"),
        ),
        (
            SinkRef(BROKER.api_version, "Broker", "default", "team", address="http"),
            addressable(HTTPS, HTTP),
            Target(HTTP.url or ""),
        ),
    ],
)
def test_an_addressable_resolves_to_its_first_or_named_address(
    ref: SinkRef, target: Addressable, expected: Target
) -> None:
    assert addressable_target(sink(ref), ref, target) == expected


def test_a_relative_uri_joins_the_address_and_the_sinks_overrides_win() -> None:
    given = sink(BROKER, "extra", ca_certs=PEM, audience="mine")

    resolved = addressable_target(given, BROKER, addressable(HTTPS))

    assert resolved == Target("https://broker-ingress.knative-eventing.svc/team/extra", PEM, "mine")


@pytest.mark.parametrize(
    ("ref", "target", "message"),
    [
        (BROKER, Addressable(), "has no address yet"),
        (BROKER, addressable(Address(None)), "has an address without a URL"),
        (BROKER, addressable(Address("/no/host")), "without a host"),
        (
            SinkRef(BROKER.api_version, "Broker", "default", "team", address="grpc"),
            addressable(HTTP),
            "has no address named 'grpc'",
        ),
    ],
)
def test_an_addressable_without_a_usable_address_is_not_found(
    ref: SinkRef, target: Addressable, message: str
) -> None:
    resolved = addressable_target(sink(ref), ref, target)

    assert isinstance(resolved, Unresolved)
    assert resolved.reason == "NotFound"
    assert message in resolved.message
    assert 'Broker "default" (eventing.knative.dev/v1) in namespace "team"' in resolved.message


def test_reading_an_addressable_keeps_only_its_addresses() -> None:
    obj = {
        "metadata": {"name": "default", "labels": {"big": "x" * 1000}},
        "status": {
            "address": {"url": "http://a/", "name": "http"},
            "addresses": [
                {"name": "https", "url": "https://a/", "CACerts": "CA", "audience": "x"},
                7,
            ],
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }

    assert read_addressable(obj) == Addressable(
        address=Address("http://a/", "http"),
        addresses=(Address("https://a/", "https", "CA", "x"),),
    )
    assert read_addressable({"status": "junk"}) == Addressable()
    assert read_addressable({"status": {"address": {"url": 5}}}) == Addressable(Address(None))
