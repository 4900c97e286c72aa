"""The status standalone mode publishes: conditions, transitions, patches, lastDelivery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mtping.model.status import (
    NO_STATUS,
    Condition,
    DeliveryReport,
    Invalid,
    Note,
    Outcome,
    PublishedStatus,
    Scheduled,
    Unresolved,
    condition_json,
    delivery_due,
    delivery_json,
    delivery_report,
    desired_status,
    read_delivery,
    read_published,
    status_patch,
    transition_note,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)
CE = (("dev.knative.sources.ping", "/apis/v1/namespaces/team/pingsources/ping"),)
SINK = Scheduled("http://display.team.svc.cluster.local/", None, None)
GONE = Unresolved('Service "display" (v1) in namespace "team" not found')
BAD = Invalid("PingSource team/ping is invalid: spec.timezone: unknown time zone 'Mars/Base'")


def desired(outcome: Outcome, current: PublishedStatus = NO_STATUS, **kw: Any) -> PublishedStatus:
    return desired_status(
        current=current,
        outcome=outcome,
        generation=kw.get("generation", 1),
        ce_attributes=CE,
        now=kw.get("now", T0),
    )


def summary(status: PublishedStatus) -> dict[str, tuple[str, str, str]]:
    return {c.type: (c.status, c.reason, c.message) for c in status.conditions}


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (
            SINK,
            {
                "Deployed": ("True", "", ""),
                "OIDCIdentityCreated": ("True", "authentication-oidc feature disabled", ""),
                "Ready": ("True", "", ""),
                "SinkProvided": ("True", "", ""),
            },
        ),
        (
            GONE,
            {
                "Deployed": ("False", "NotScheduled", "not scheduled until its sink resolves"),
                "OIDCIdentityCreated": ("True", "authentication-oidc feature disabled", ""),
                "Ready": ("False", "NotFound", GONE.message),
                "SinkProvided": ("False", "NotFound", GONE.message),
            },
        ),
        (
            Unresolved("waiting for the first list of Service", waiting=True),
            {
                "Deployed": ("Unknown", "NotScheduled", "not scheduled until its sink resolves"),
                "OIDCIdentityCreated": ("True", "authentication-oidc feature disabled", ""),
                "Ready": ("Unknown", "NotFound", "waiting for the first list of Service"),
                "SinkProvided": ("Unknown", "NotFound", "waiting for the first list of Service"),
            },
        ),
        (
            BAD,
            {
                "Deployed": ("False", "InvalidSpec", BAD.message),
                "OIDCIdentityCreated": ("True", "authentication-oidc feature disabled", ""),
                "Ready": ("False", "InvalidSpec", BAD.message),
                "SinkProvided": ("Unknown", "InvalidSpec", "not resolved: the spec is invalid"),
            },
        ),
    ],
)
def test_conditions_follow_knative_names_and_reasons(
    outcome: Outcome, expected: dict[str, tuple[str, str, str]]
) -> None:
    status = desired(outcome)

    assert summary(status) == expected
    assert [c.type for c in status.conditions] == sorted(expected)  # sorted, as Knative
    assert {c.last_transition_time for c in status.conditions} == {"2026-03-01T12:00:00Z"}


def test_a_scheduled_source_publishes_its_sink_generation_and_ce_attributes() -> None:
    sink = Scheduled("https://broker.example/team", "-----BEGIN CERTIFICATE-----", "aud")

    status = desired(sink, generation=7)

    assert (status.sink_uri, status.sink_ca_certs, status.sink_audience) == (
        "https://broker.example/team",
        "-----BEGIN CERTIFICATE-----",
        "aud",
    )
    assert status.observed_generation == 7
    assert status.ce_attributes == CE


@pytest.mark.parametrize("outcome", [GONE, BAD])
def test_without_a_sink_the_sink_fields_are_cleared(outcome: Outcome) -> None:
    was_ready = desired(SINK)

    status = desired(outcome, was_ready, now=T1)

    assert (status.sink_uri, status.sink_ca_certs, status.sink_audience) == (None, None, None)
    assert status_patch(was_ready, status)["sinkUri"] is None  # null deletes it
    assert status.ce_attributes == (() if isinstance(outcome, Invalid) else CE)


def test_transition_time_changes_only_when_the_status_does() -> None:
    gone = desired(GONE)
    other_reason = Unresolved('Sink "s" has no address yet', reason="NotFound")

    still_gone = desired(other_reason, gone, now=T1)
    back = desired(SINK, still_gone, now=T1 + timedelta(minutes=1))

    assert still_gone.condition("Ready") == Condition(
        "Ready", "False", "NotFound", other_reason.message, "2026-03-01T12:00:00Z"
    )
    assert back.condition("Ready") == Condition("Ready", "True", "", "", "2026-03-01T12:06:00Z")
    oidc = back.condition("OIDCIdentityCreated")
    assert oidc is not None and oidc.last_transition_time == "2026-03-01T12:00:00Z"


def test_the_same_outcome_later_is_the_same_status_and_an_empty_patch() -> None:
    published = desired(SINK)

    again = desired(SINK, published, now=T1)

    assert again == published
    assert status_patch(published, again) == {}


def test_what_was_written_reads_back_equal() -> None:
    """No write loop: the MODIFIED event of our own write must find nothing to change."""
    for outcome in (SINK, GONE, BAD):
        status = desired(outcome, generation=3)
        written = status_patch(NO_STATUS, status)
        stored = {key: value for key, value in written.items() if value is not None}

        assert read_published(stored) == status, outcome


def test_reading_tolerates_what_others_wrote() -> None:
    raw = {
        "observedGeneration": "2",
        "conditions": [
            "junk",
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "Deployed", "status": True},
        ],
        "sinkUri": 5,
        "ceAttributes": [{"type": "t", "source": "s"}, 3],
    }

    status = read_published(raw)

    assert status.observed_generation is None
    assert [c.type for c in status.conditions] == ["Deployed", "Ready"]  # sorted
    assert status.condition("Deployed") == Condition("Deployed", "")
    assert status.sink_uri is None
    assert status.ce_attributes == (("t", "s"),)
    assert read_published(None) == NO_STATUS
    assert read_published([]) == NO_STATUS


def test_condition_order_in_the_object_does_not_cost_a_write() -> None:
    published = desired(SINK)
    conditions = [condition_json(c) for c in reversed(published.conditions)]
    raw = {
        "observedGeneration": 1,
        "conditions": conditions,
        "sinkUri": SINK.sink_uri,
        "ceAttributes": [{"type": t, "source": s} for t, s in CE],
    }

    assert status_patch(read_published(raw), desired(SINK, read_published(raw), now=T1)) == {}


def test_patch_holds_only_what_changed_and_every_condition_when_one_did() -> None:
    published = desired(SINK, generation=1)

    changed = desired(GONE, published, generation=2, now=T1)
    patch = status_patch(published, changed)

    assert set(patch) == {"observedGeneration", "conditions", "sinkUri"}
    assert patch["observedGeneration"] == 2
    assert [c["type"] for c in patch["conditions"]] == [
        "Deployed",
        "OIDCIdentityCreated",
        "Ready",
        "SinkProvided",
    ]
    assert patch["conditions"][1] == {
        "type": "OIDCIdentityCreated",
        "status": "True",
        "reason": "authentication-oidc feature disabled",
        "lastTransitionTime": "2026-03-01T12:00:00Z",
    }


# --- Events on transitions ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (NO_STATUS, SINK, Note("Normal", "Ready", f"ready: sending to {SINK.sink_uri}")),
        (NO_STATUS, GONE, Note("Warning", "SinkNotFound", f"sink not resolved: {GONE.message}")),
        (SINK, GONE, Note("Warning", "SinkNotFound", f"sink not resolved: {GONE.message}")),
        (NO_STATUS, BAD, Note("Warning", "InvalidSpec", BAD.message)),
        (GONE, BAD, Note("Warning", "InvalidSpec", BAD.message)),
        (SINK, SINK, None),
        (GONE, Unresolved("another message"), None),  # same status and reason
        (NO_STATUS, Unresolved("listing", waiting=True), None),
    ],
)
def test_an_event_tells_each_change_of_ready_and_only_that(
    before: PublishedStatus | Outcome, after: Outcome, expected: Note | None
) -> None:
    current = before if isinstance(before, PublishedStatus) else desired(before)

    assert transition_note(current, desired(after, current, now=T1)) == expected


# --- lastDelivery ---------------------------------------------------------------------------


def report(*, delivered: bool = True, code: int | None = 202, at: datetime = T0) -> DeliveryReport:
    return delivery_report(
        delivered=delivered,
        scheduled=at - timedelta(seconds=1),
        finished=at,
        attempts=1 if delivered else 3,
        status_code=code,
        error=None if delivered else "503 Service Unavailable",
    )


def test_a_delivery_report_reads_back_from_its_json() -> None:
    failed = report(delivered=False, code=503)

    encoded = delivery_json(failed)

    assert encoded == {
        "result": "Failed",
        "scheduledTime": "2026-03-01T11:59:59Z",
        "time": "2026-03-01T12:00:00Z",
        "attempts": 3,
        "statusCode": 503,
        "error": "503 Service Unavailable",
    }
    assert read_delivery({"lastDelivery": encoded}) == failed
    stored = {k: v for k, v in delivery_json(report()).items() if v is not None}
    assert read_delivery({"lastDelivery": stored}) == report()
    assert read_delivery({"lastDelivery": {"result": "Maybe"}}) is None
    assert read_delivery("junk") is None


@pytest.mark.parametrize(
    ("published", "latest", "refresh", "due"),
    [
        (None, report(), 3600, True),
        (report(), report(at=T1), 3600, False),  # same verdict, fresh enough
        (report(), report(delivered=False, code=503, at=T1), 3600, True),
        (report(), report(code=200, at=T1), 3600, True),  # another status code
        (report(), report(at=T0 + timedelta(hours=1)), 3600, True),  # stale: refreshed
        (report(), report(at=T0 + timedelta(days=9)), 0, False),  # 0: never refreshed
    ],
)
def test_a_delivery_report_is_due_on_a_new_verdict_or_when_stale(
    published: DeliveryReport | None, latest: DeliveryReport, refresh: float, due: bool
) -> None:
    now = datetime.fromisoformat(latest.time)

    assert delivery_due(published=published, latest=latest, now=now, refresh=refresh) is due
