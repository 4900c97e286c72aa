"""The CloudEvent a PingSource tick sends, in CloudEvents 1.0 HTTP binary content mode.

Everything that does not change between ticks (headers, body) is computed once per source
into an EventTemplate; a tick only adds `ce-id` and `ce-time`. The id is derived from the
source's uid and the scheduled instant, so every retry, and every replica that fires the same
tick, sends the same id and a receiver can deduplicate. `ce-time` is the scheduled instant,
not the send time. Pure: no I/O, never reads the clock, knows nothing about HTTP clients.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from mtping.model import PingSourceSpec, SourceKey

SPEC_VERSION = "1.0"
EVENT_TYPE = "dev.knative.sources.ping"  # Knative's PingSourceEventType
# Knative's adapter client adds this header naming the source's namespace (pkg/apis/http.go).
NAMESPACE_HEADER = "Kn-Namespace"
CONTENT_TYPE_HEADER = "content-type"
# Fixed forever: changing it changes every event id, so a receiver deduplicating by id would
# take a retry sent across an upgrade for a new event.
EVENT_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:mtping:pingsource-event-id")
_EVENT_ID_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes
# RFC 9562 variant bits (10xx) applied to the first hex digit of the 9th byte.
_UUID_VARIANT = {digit: "89ab"[int(digit, 16) & 0b11] for digit in "0123456789abcdef"}
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)
# CloudEvents HTTP binding 1.0.2 section 3.1.3.2: printable ASCII (U+0021..U+007E) passes as
# is, except '"' and '%'; space, those two and everything else is percent-encoded as UTF-8.
HEADER_SAFE_CHARACTERS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')


@dataclass(frozen=True, slots=True)
class EventTemplate:
    """The part of a source's event that is the same on every tick."""

    uid: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


def event_source(key: SourceKey) -> str:
    """`ce-source` of a PingSource, as Knative's PingSourceSource spells it."""
    return f"/apis/v1/namespaces/{key.namespace}/pingsources/{key.name}"


def build_template(spec: PingSourceSpec) -> EventTemplate:
    """Static headers and body of `spec`'s events."""
    headers = [
        ("ce-specversion", SPEC_VERSION),
        ("ce-type", EVENT_TYPE),
        ("ce-source", encode_header_value(event_source(spec.key))),
        *((f"ce-{name}", encode_header_value(value)) for name, value in spec.extensions),
    ]
    # As Knative: a content type only describes data; without data none is sent.
    if spec.data is not None and spec.content_type:
        headers.append((CONTENT_TYPE_HEADER, spec.content_type))
    headers.append((NAMESPACE_HEADER, spec.key.namespace))
    return EventTemplate(uid=spec.uid, headers=tuple(headers), body=spec.data or b"")


def render_headers(template: EventTemplate, scheduled: datetime) -> list[tuple[str, str]]:
    """All headers of the event for the tick scheduled at `scheduled` (an aware datetime)."""
    return [*template.headers, *tick_headers(template, scheduled)]


def tick_headers(
    template: EventTemplate, scheduled: datetime
) -> tuple[tuple[str, str], tuple[str, str]]:
    """The headers that change per tick: `ce-id` and `ce-time`, in that order."""
    return (
        ("ce-id", event_id(template.uid, scheduled)),
        ("ce-time", format_time(scheduled)),
    )


def event_id(uid: str, scheduled: datetime) -> str:
    """Same (source uid, instant) -> same id, on every retry and every replica.

    It is uuid.uuid5(EVENT_ID_NAMESPACE, f"{uid}/{epoch nanoseconds}") as text, spelled out
    because it runs once per event: the UUID object and its checks cost three times the hash.
    """
    name = uid.encode() + _instant_suffix(scheduled)
    digest = hashlib.sha1(_EVENT_ID_NAMESPACE_BYTES + name, usedforsecurity=False).hexdigest()
    # Version 5 in the 13th hex digit, the variant in the 17th; the rest is the digest's.
    return (
        f"{digest[:8]}-{digest[8:12]}-5{digest[13:16]}-"
        f"{_UUID_VARIANT[digest[16]]}{digest[17:20]}-{digest[20:32]}"
    )


@functools.lru_cache(maxsize=64)
def format_time(scheduled: datetime) -> str:
    """RFC 3339 in UTC with a Z, fractional seconds only when nonzero (as Go's RFC3339Nano)."""
    utc = _require_aware(scheduled).astimezone(UTC)
    whole = utc.replace(tzinfo=None, microsecond=0).isoformat()
    fraction = f".{utc.microsecond:06d}".rstrip("0") if utc.microsecond else ""
    return f"{whole}{fraction}Z"


def encode_header_value(value: str) -> str:
    """Percent-encode a CloudEvents attribute value for an HTTP header (binding 3.1.3.2)."""
    return quote(value, safe=HEADER_SAFE_CHARACTERS)


@functools.lru_cache(maxsize=64)
def _instant_suffix(scheduled: datetime) -> bytes:
    """`/<epoch nanoseconds>` of an event id's name: the same for every source of a tick, so
    computed once per instant, not once per event."""
    return f"/{_epoch_nanoseconds(scheduled)}".encode()


def _epoch_nanoseconds(instant: datetime) -> int:
    # Integer arithmetic: a float timestamp would round distinct microseconds together.
    return (_require_aware(instant) - UNIX_EPOCH) // ONE_MICROSECOND * 1000


def _require_aware(instant: datetime) -> datetime:
    if instant.utcoffset() is None:
        raise ValueError(f"scheduled instant {instant.isoformat()} has no timezone")
    return instant
