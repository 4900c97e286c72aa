"""What sink resolution needs from an Addressable object: its address(es), nothing more.

An Addressable (Knative's duck type) publishes `status.address` {url, name, CACerts, audience}
and/or `status.addresses[]`. The resolver keeps one `Addressable` per watched object instead of
the object itself, so watching every Broker or Service in a large cluster stays cheap, and
equal values mean "nothing a sink depends on changed". Pure: reads dicts, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Address:
    url: str | None
    name: str | None = None
    ca_certs: str | None = None
    audience: str | None = None


@dataclass(frozen=True, slots=True)
class Addressable:
    address: Address | None = None
    addresses: tuple[Address, ...] = ()


EXISTS = Addressable()
"""Stands for an object whose existence is all that matters (a core v1 Service)."""


def read_addressable(obj: Mapping[str, object]) -> Addressable:
    """The addresses in `obj`'s status; lenient: what is malformed reads as absent."""
    status = obj.get("status")
    if not isinstance(status, Mapping):
        return Addressable()
    single = status.get("address")
    many = status.get("addresses")
    return Addressable(
        address=_read_address(single) if isinstance(single, Mapping) else None,
        addresses=tuple(_read_address(item) for item in many if isinstance(item, Mapping))
        if isinstance(many, list)
        else (),
    )


def _read_address(raw: Mapping[str, object]) -> Address:
    return Address(
        url=_text(raw.get("url")),
        name=_text(raw.get("name")),
        ca_certs=_text(raw.get("CACerts")),
        audience=_text(raw.get("audience")),
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
