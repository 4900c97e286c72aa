"""A PingSource's `.status` as standalone mode publishes it, computed without I/O.

What the registry concluded about a source (`Scheduled`, `Unresolved`, `Invalid`) becomes the
status Knative's controller would write: `observedGeneration`, the conditions `SinkProvided`,
`Deployed`, `OIDCIdentityCreated` and `Ready` with Knative's reasons, `sinkUri`,
`sinkCACerts`, `sinkAudience` and `ceAttributes`. A condition keeps its `lastTransitionTime`
unless its status changes. `status_patch` is empty exactly when nothing changed, so a resync
costs no write. `lastDelivery` (beyond Knative) is a separate `DeliveryReport`, written at its
own bounded rate. Pure: no I/O, never reads the clock (`now` is given), never logs.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

READY = "Ready"
SINK_PROVIDED = "SinkProvided"
DEPLOYED = "Deployed"
OIDC_IDENTITY_CREATED = "OIDCIdentityCreated"
TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"
# Knative's reason while OIDC is off (eventing pkg/auth/serviceaccount.go); mtping has no OIDC.
OIDC_DISABLED = "authentication-oidc feature disabled"
NOT_FOUND = "NotFound"  # Knative's one reason for every sink resolution failure
INVALID_SPEC = "InvalidSpec"
NOT_SCHEDULED = "NotScheduled"
DELIVERED, FAILED = "Delivered", "Failed"


# --- what the registry concluded ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scheduled:
    """The source is in this replica's scheduler, sending to this resolved sink."""

    sink_uri: str
    sink_ca_certs: str | None = None
    sink_audience: str | None = None


@dataclass(frozen=True, slots=True)
class Unresolved:
    """The sink has no address. `waiting`: not known yet (its kind is still being listed),
    so nothing is published until it is."""

    message: str
    reason: str = NOT_FOUND
    waiting: bool = False


@dataclass(frozen=True, slots=True)
class Invalid:
    """The spec cannot be fired; `message` names each bad field by its path."""

    message: str


Outcome = Scheduled | Unresolved | Invalid


# --- the published status -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: str
    reason: str = ""
    message: str = ""
    last_transition_time: str = ""
    severity: str = ""  # Knative's Error severity is the empty string


@dataclass(frozen=True, slots=True)
class PublishedStatus:
    """The part of `.status` standalone mode owns; conditions sorted by type, as Knative."""

    observed_generation: int | None = None
    conditions: tuple[Condition, ...] = ()
    sink_uri: str | None = None
    sink_ca_certs: str | None = None
    sink_audience: str | None = None
    ce_attributes: tuple[tuple[str, str], ...] = ()
    """(type, source) pairs."""

    def condition(self, kind: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == kind), None)


NO_STATUS = PublishedStatus()


def read_published(raw: object) -> PublishedStatus:
    """`.status` as found on the object; lenient, as anyone may have written it."""
    if not isinstance(raw, Mapping):
        return NO_STATUS
    generation = raw.get("observedGeneration")
    return PublishedStatus(
        observed_generation=generation if _is_int(generation) else None,
        conditions=_read_conditions(raw.get("conditions")),
        sink_uri=_text_or_none(raw.get("sinkUri")),
        sink_ca_certs=_text_or_none(raw.get("sinkCACerts")),
        sink_audience=_text_or_none(raw.get("sinkAudience")),
        ce_attributes=_read_ce_attributes(raw.get("ceAttributes")),
    )


def _read_conditions(raw: object) -> tuple[Condition, ...]:
    if not isinstance(raw, list):
        return ()
    # Interned: kept for every source, these texts repeat across sources (the JSON decoder
    # makes a new string for each), so sharing them saves most of a status's memory.
    found = [
        Condition(
            type=_shared(item.get("type")),
            status=_shared(item.get("status")),
            reason=_shared(item.get("reason")),
            message=_shared(item.get("message")),
            last_transition_time=_shared(item.get("lastTransitionTime")),
            severity=_shared(item.get("severity")),
        )
        for item in raw
        if isinstance(item, Mapping)
    ]
    return tuple(sorted(found, key=lambda condition: condition.type))


def _read_ce_attributes(raw: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, list):
        return ()
    return tuple(
        (_shared(item.get("type")), _text(item.get("source")))
        for item in raw
        if isinstance(item, Mapping)
    )


def desired_status(
    *,
    current: PublishedStatus,
    outcome: Outcome,
    generation: int,
    ce_attributes: tuple[tuple[str, str], ...],
    now: datetime,
) -> PublishedStatus:
    """The status `outcome` calls for; conditions whose status is unchanged keep their time."""
    stamp = format_time(now)
    conditions = tuple(
        _keep_transition_time(current.condition(wanted.type), wanted, stamp)
        for wanted in sorted(_conditions(outcome), key=lambda condition: condition.type)
    )
    sink = outcome if isinstance(outcome, Scheduled) else None
    return PublishedStatus(
        observed_generation=generation,
        conditions=conditions,
        sink_uri=sink.sink_uri if sink else None,
        sink_ca_certs=sink.sink_ca_certs if sink else None,
        sink_audience=sink.sink_audience if sink else None,
        ce_attributes=() if isinstance(outcome, Invalid) else ce_attributes,
    )


def _conditions(outcome: Outcome) -> tuple[Condition, ...]:
    oidc = Condition(OIDC_IDENTITY_CREATED, TRUE, reason=OIDC_DISABLED)
    if isinstance(outcome, Scheduled):
        return (
            Condition(SINK_PROVIDED, TRUE),
            Condition(DEPLOYED, TRUE),
            oidc,
            Condition(READY, TRUE),
        )
    if isinstance(outcome, Invalid):
        return (
            Condition(SINK_PROVIDED, UNKNOWN, INVALID_SPEC, "not resolved: the spec is invalid"),
            Condition(DEPLOYED, FALSE, INVALID_SPEC, outcome.message),
            oidc,
            Condition(READY, FALSE, INVALID_SPEC, outcome.message),
        )
    status = UNKNOWN if outcome.waiting else FALSE
    return (
        Condition(SINK_PROVIDED, status, outcome.reason, outcome.message),
        Condition(DEPLOYED, status, NOT_SCHEDULED, "not scheduled until its sink resolves"),
        oidc,
        Condition(READY, status, outcome.reason, outcome.message),
    )


def _keep_transition_time(old: Condition | None, wanted: Condition, stamp: str) -> Condition:
    if old is not None and old.status == wanted.status:
        stamp = old.last_transition_time
    return Condition(
        type=wanted.type,
        status=wanted.status,
        reason=wanted.reason,
        message=wanted.message,
        last_transition_time=stamp,
    )


def status_patch(current: PublishedStatus, desired: PublishedStatus) -> dict[str, Any]:
    """The merge-patch `status` fields turning `current` into `desired`; {} when equal."""
    patch: dict[str, Any] = {}
    if current.observed_generation != desired.observed_generation:
        patch["observedGeneration"] = desired.observed_generation
    if current.conditions != desired.conditions:
        # A merge patch replaces a list whole: send every condition.
        patch["conditions"] = [condition_json(c) for c in desired.conditions]
    for field, old, new in (
        ("sinkUri", current.sink_uri, desired.sink_uri),
        ("sinkCACerts", current.sink_ca_certs, desired.sink_ca_certs),
        ("sinkAudience", current.sink_audience, desired.sink_audience),
    ):
        if old != new:
            patch[field] = new  # None deletes the field
    if current.ce_attributes != desired.ce_attributes:
        patch["ceAttributes"] = [
            {"type": kind, "source": source} for kind, source in desired.ce_attributes
        ] or None
    return patch


def condition_json(condition: Condition) -> dict[str, str]:
    """A condition as Knative serializes it: empty reason, message and severity omitted."""
    encoded = {"type": condition.type, "status": condition.status}
    for field, value in (
        ("reason", condition.reason),
        ("message", condition.message),
        ("severity", condition.severity),
        ("lastTransitionTime", condition.last_transition_time),
    ):
        if value:
            encoded[field] = value
    return encoded


# --- Events on transitions ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Note:
    """A Kubernetes Event to record about a source."""

    type: str  # Normal or Warning
    reason: str
    message: str


def transition_note(current: PublishedStatus, desired: PublishedStatus) -> Note | None:
    """The Event telling that Ready changed (status or reason) between the two; else None."""
    new = desired.condition(READY)
    old = current.condition(READY)
    if new is None or new.status == UNKNOWN:
        return None
    if old is not None and (old.status, old.reason) == (new.status, new.reason):
        return None
    if new.status == TRUE:
        return Note("Normal", READY, f"ready: sending to {desired.sink_uri}")
    if new.reason == INVALID_SPEC:
        return Note("Warning", INVALID_SPEC, new.message)
    return Note("Warning", "SinkNotFound", f"sink not resolved: {new.message}")


# --- lastDelivery ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """`status.lastDelivery`: how the latest finished tick of a source ended."""

    result: str  # Delivered or Failed
    scheduled_time: str
    time: str
    attempts: int
    status_code: int | None = None
    error: str | None = None

    @property
    def verdict(self) -> tuple[str, int | None, str | None]:
        """What changes when delivery changes; the times change on every tick."""
        return (self.result, self.status_code, self.error)


def delivery_report(
    *,
    delivered: bool,
    scheduled: datetime,
    finished: datetime,
    attempts: int,
    status_code: int | None,
    error: str | None,
) -> DeliveryReport:
    return DeliveryReport(
        result=DELIVERED if delivered else FAILED,
        scheduled_time=format_time(scheduled),
        time=format_time(finished),
        attempts=attempts,
        status_code=status_code,
        error=None if delivered else (error or "unknown error"),
    )


def read_delivery(raw_status: object) -> DeliveryReport | None:
    """`status.lastDelivery` as found on the object; None when absent or malformed."""
    if not isinstance(raw_status, Mapping):
        return None
    raw = raw_status.get("lastDelivery")
    if not isinstance(raw, Mapping) or raw.get("result") not in (DELIVERED, FAILED):
        return None
    code, attempts = raw.get("statusCode"), raw.get("attempts")
    return DeliveryReport(
        result=str(raw["result"]),
        scheduled_time=_text(raw.get("scheduledTime")),
        time=_text(raw.get("time")),
        attempts=attempts if isinstance(attempts, int) else 0,
        status_code=code if isinstance(code, int) else None,
        error=_text_or_none(raw.get("error")),
    )


def delivery_json(report: DeliveryReport) -> dict[str, Any]:
    encoded: dict[str, Any] = {
        "result": report.result,
        "scheduledTime": report.scheduled_time,
        "time": report.time,
        "attempts": report.attempts,
        "statusCode": report.status_code,  # None removes a stale code in a merge patch
        "error": report.error,
    }
    return encoded


def delivery_due(
    *, published: DeliveryReport | None, latest: DeliveryReport, now: datetime, refresh: float
) -> bool:
    """Write `latest`? When its verdict differs from the published one, or the published
    one is `refresh` seconds old (0: never refresh an unchanged verdict)."""
    if published is None or published.verdict != latest.verdict:
        return True
    if refresh <= 0:
        return False
    written = parse_time(published.time)
    return written is None or (now - written).total_seconds() >= refresh


# --- helpers --------------------------------------------------------------------------------


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC to the second, as Kubernetes writes metav1.Time."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _shared(value: object) -> str:
    return sys.intern(value) if isinstance(value, str) else ""


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
