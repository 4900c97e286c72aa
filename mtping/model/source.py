"""Immutable, validated values describing one PingSource, as the rest of mtping sees it.

Built only by `mtping.model.parse.parse_source` from the raw JSON dict the apiserver returns;
once built, every field is known-good, so the scheduler and the sender never re-check it.
Nothing here does I/O, reads the clock or knows about Kubernetes clients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from mtping.schedule import CronSchedule

MIB = 1024 * 1024


class SourceKey(NamedTuple):
    """Identity of a PingSource in the cluster; stable across updates, unlike `uid` on re-create."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class SinkRef:
    """`spec.sink.ref`: an Addressable object whose URL is the sink; namespace already defaulted."""

    api_version: str
    kind: str
    name: str
    namespace: str
    address: str | None = None
    """`ref.address`: which of the target's `status.addresses` to use, by name."""


@dataclass(frozen=True, slots=True)
class Sink:
    """`spec.sink` as written by the user: a ref, an absolute uri, or a ref plus a relative uri."""

    ref: SinkRef | None
    uri: str | None
    ca_certs: str | None
    audience: str | None


@dataclass(frozen=True, slots=True)
class ObservedStatus:
    """What a controller (Knative's or ours) last wrote in `.status`.

    Knative's adapter fires only sources whose Ready condition is True, at `status.sinkUri`.
    """

    ready: bool
    sink_uri: str | None
    sink_ca_certs: str | None
    sink_audience: str | None


NOT_OBSERVED = ObservedStatus(ready=False, sink_uri=None, sink_ca_certs=None, sink_audience=None)


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits on a source's event data.

    `max_data_bytes` is Knative's `data-max-size` from config-ping-defaults: None (Knative's -1)
    means unlimited. Like Knative it measures the field as written (`data` UTF-8 bytes, or the
    `dataBase64` text before decoding). `hard_cap_bytes` bounds the decoded body whatever the
    ConfigMap says: 1 MiB is below what etcd lets an object carry (~1.5 MiB request limit), so
    no real source is refused, yet a body re-sent every tick by every source stays cheap in
    memory and on the wire. The cap wins when data-max-size is larger.
    """

    max_data_bytes: int | None = None
    hard_cap_bytes: int = MIB

    def __post_init__(self) -> None:
        # Knative spells "unlimited" -1; here it is None, so a stray -1 fails loudly at startup
        # instead of refusing every source with data.
        if self.max_data_bytes is not None and self.max_data_bytes < 0:
            raise ValueError(f"max_data_bytes must be >= 0 or None, got {self.max_data_bytes}")
        if self.hard_cap_bytes < 1:
            raise ValueError(f"hard_cap_bytes must be positive, got {self.hard_cap_bytes}")


@dataclass(frozen=True, slots=True)
class PingSourceSpec:
    """One validated PingSource: what to send, where, and when."""

    key: SourceKey
    uid: str
    generation: int
    schedule: CronSchedule
    content_type: str | None
    data: bytes | None
    extensions: tuple[tuple[str, str], ...]
    sink: Sink
    status: ObservedStatus

    @property
    def schedule_fingerprint(self) -> tuple[str, str]:
        """Equal fingerprints mean equal firing instants: the scheduler may keep its next tick."""
        return self.schedule.key
