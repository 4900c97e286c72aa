"""Unit tests of mtping.event, checked against the CloudEvents SDK's own binary-mode parser."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_binary_event

from mtping.event import (
    EVENT_ID_NAMESPACE,
    EventTemplate,
    build_template,
    encode_header_value,
    event_id,
    event_source,
    format_time,
    render_headers,
    tick_headers,
)
from mtping.model import PingSourceSpec, SourceKey, parse_source

SCHEDULED = datetime(2026, 11, 26, 22, 0, tzinfo=UTC)


def make_spec(**spec: Any) -> PingSourceSpec:
    return parse_source(
        {
            "metadata": {"namespace": "team-a", "name": "ping", "uid": "uid-1", "generation": 1},
            "spec": {"schedule": "0 * * * *", "sink": {"uri": "http://sink.example"}, **spec},
        }
    )


def received(spec: PingSourceSpec, scheduled: datetime = SCHEDULED) -> Any:
    """The event as a CloudEvents SDK receiver decodes our binary-mode request."""
    template = build_template(spec)
    headers = render_headers(template, scheduled)
    assert len({name.lower() for name, _ in headers}) == len(headers), "duplicate header"
    return from_binary_event(HTTPMessage(headers=dict(headers), body=template.body))


# --- headers and body ----------------------------------------------------------------------


def test_template_headers_for_json_data() -> None:
    template = build_template(make_spec(contentType="application/json", data='{"a": 1}'))
    assert template == EventTemplate(
        uid="uid-1",
        headers=(
            ("ce-specversion", "1.0"),
            ("ce-type", "dev.knative.sources.ping"),
            ("ce-source", "/apis/v1/namespaces/team-a/pingsources/ping"),
            ("content-type", "application/json"),
            ("Kn-Namespace", "team-a"),
        ),
        body=b'{"a": 1}',
    )


def test_render_adds_id_and_time_after_the_static_headers() -> None:
    template = build_template(make_spec())
    headers = render_headers(template, SCHEDULED)
    assert headers[: len(template.headers)] == list(template.headers)
    assert headers[len(template.headers) :] == [
        ("ce-id", event_id("uid-1", SCHEDULED)),
        ("ce-time", "2026-11-26T22:00:00Z"),
    ]


def test_no_data_means_empty_body_and_no_content_type() -> None:
    template = build_template(make_spec(contentType="application/json"))
    assert template.body == b""
    assert "content-type" not in dict(template.headers)


def test_data_without_content_type_sends_no_content_type_like_knative() -> None:
    template = build_template(make_spec(data="plain"))
    assert template.body == b"plain"
    assert "content-type" not in dict(template.headers)


def test_extensions_become_ce_headers_in_name_order() -> None:
    template = build_template(make_spec(ceOverrides={"extensions": {"zeta": "z", "Alpha": "a"}}))
    names = [name for name, _ in template.headers]
    assert names.index("ce-alpha") + 1 == names.index("ce-zeta")
    assert dict(template.headers)["ce-alpha"] == "a"


def test_event_source_matches_knative() -> None:
    assert event_source(SourceKey("ns", "name")) == "/apis/v1/namespaces/ns/pingsources/name"


def test_every_header_is_printable_ascii_whatever_the_extension_values() -> None:
    spec = make_spec(ceOverrides={"extensions": {"a": 'é € 😀 "q" 100%', "b": "\u2028\u00a0"}})
    for name, value in render_headers(build_template(spec), SCHEDULED):
        assert name.isascii() and name.isprintable()
        assert value.isascii() and value.isprintable() and " " not in value, (name, value)


# --- round trip through the CloudEvents SDK -------------------------------------------------


def test_sdk_reads_json_data_event() -> None:
    event = received(make_spec(contentType="application/json", data='{"hello": "world"}'))
    assert event.get_specversion() == "1.0"
    assert event.get_type() == "dev.knative.sources.ping"
    assert event.get_source() == "/apis/v1/namespaces/team-a/pingsources/ping"
    assert event.get_id() == event_id("uid-1", SCHEDULED)
    assert event.get_time() == SCHEDULED
    assert event.get_datacontenttype() == "application/json"
    assert event.get_data() == {"hello": "world"}


def test_sdk_reads_binary_data_base64_event() -> None:
    event = received(make_spec(contentType="application/octet-stream", dataBase64="AP8Q"))
    assert event.get_datacontenttype() == "application/octet-stream"
    assert event.get_data() == b"\x00\xff\x10"


def test_sdk_reads_v1beta1_json_data_event() -> None:
    event = received(make_spec(jsonData='{"n": 1}'))
    assert event.get_datacontenttype() == "application/json"
    assert event.get_data() == {"n": 1}


def test_sdk_reads_event_without_data() -> None:
    event = received(make_spec())
    assert event.get_data() is None
    assert event.get_datacontenttype() is None


def test_sdk_reads_extensions_back_exactly() -> None:
    values = {"plain": "v", "spaced": "a b", "quoted": '"x"', "pct": "100%25", "uni": "Euro € 😀"}
    event = received(make_spec(ceOverrides={"extensions": values}))
    assert {name: event.get_extension(name) for name in values} == values


def test_sdk_reads_the_scheduled_instant_with_microseconds() -> None:
    scheduled = datetime(2026, 3, 29, 3, 0, 0, 250_000, tzinfo=ZoneInfo("Europe/Berlin"))
    assert received(make_spec(), scheduled).get_time() == scheduled


# --- percent-encoding ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("abc", "abc"),
        ("", ""),
        ("a b", "a%20b"),
        ('say "hi"', "say%20%22hi%22"),
        ("100%", "100%25"),
        ("Euro € 😀", "Euro%20%E2%82%AC%20%F0%9F%98%80"),  # the binding spec's own example
        ("é", "%C3%A9"),
        ("\u00a0", "%C2%A0"),
        ("!#$&'()*+,-./:;<=>?@[\\]^_`{|}~", "!#$&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    ],
)
def test_header_values_are_percent_encoded_per_binding_3_1_3_2(value: str, encoded: str) -> None:
    assert encode_header_value(value) == encoded


# --- event id ------------------------------------------------------------------------------


def test_event_id_is_deterministic_and_a_uuid() -> None:
    first = event_id("uid-1", SCHEDULED)
    assert first == event_id("uid-1", SCHEDULED)
    assert uuid.UUID(first).version == 5


@pytest.mark.parametrize("seed", range(5))
def test_event_id_is_the_uuid5_of_uid_and_epoch_nanoseconds(seed: int) -> None:
    # The ids must never change across versions: receivers deduplicate by them.
    rng = random.Random(seed)
    for _ in range(2000):
        uid = str(uuid.UUID(int=rng.getrandbits(128)))
        scheduled = SCHEDULED + timedelta(microseconds=rng.randrange(-(10**15), 10**15))
        nanoseconds = (
            (scheduled - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000
        )
        expected = uuid.uuid5(EVENT_ID_NAMESPACE, f"{uid}/{nanoseconds}")
        assert event_id(uid, scheduled) == str(expected)


def test_event_id_of_a_known_instant_never_changes() -> None:
    assert event_id("uid-1", SCHEDULED) == "25090386-dcba-59ac-99f7-b601b2188b2b"


def test_tick_headers_are_the_last_two_rendered_headers() -> None:
    template = build_template(make_spec())
    assert render_headers(template, SCHEDULED)[-2:] == list(tick_headers(template, SCHEDULED))


def test_event_id_depends_on_the_instant_not_its_zone() -> None:
    berlin = SCHEDULED.astimezone(ZoneInfo("Europe/Berlin"))
    assert event_id("uid-1", berlin) == event_id("uid-1", SCHEDULED)


@pytest.mark.parametrize(
    ("uid", "scheduled"),
    [
        ("uid-2", SCHEDULED),
        ("uid-1", SCHEDULED + timedelta(microseconds=1)),
        ("uid-1", SCHEDULED + timedelta(minutes=1)),
        ("uid-1", SCHEDULED - timedelta(days=365)),
        ("uid-1/1", SCHEDULED),
    ],
)
def test_event_id_differs_for_other_sources_and_instants(uid: str, scheduled: datetime) -> None:
    assert event_id(uid, scheduled) != event_id("uid-1", SCHEDULED)


def test_event_ids_of_a_year_of_minutes_are_unique() -> None:
    minutes = [SCHEDULED + timedelta(minutes=n) for n in range(0, 525_600, 7)]
    assert len({event_id("uid-1", minute) for minute in minutes}) == len(minutes)


def test_event_id_refuses_a_naive_instant() -> None:
    with pytest.raises(ValueError, match="no timezone"):
        event_id("uid-1", SCHEDULED.replace(tzinfo=None))


# --- ce-time -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheduled", "text"),
    [
        (SCHEDULED, "2026-11-26T22:00:00Z"),
        (SCHEDULED.replace(microsecond=500_000), "2026-11-26T22:00:00.5Z"),
        (SCHEDULED.replace(microsecond=1), "2026-11-26T22:00:00.000001Z"),
        (SCHEDULED.replace(microsecond=120_000), "2026-11-26T22:00:00.12Z"),
        (datetime(2026, 7, 1, 9, 30, tzinfo=ZoneInfo("Europe/Berlin")), "2026-07-01T07:30:00Z"),
        (datetime(2026, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=-5))), "2026-01-01T05:00:00Z"),
        (datetime(5, 1, 2, 3, 4, 5, tzinfo=UTC), "0005-01-02T03:04:05Z"),
    ],
)
def test_format_time_is_rfc3339_utc(scheduled: datetime, text: str) -> None:
    assert format_time(scheduled) == text


def test_format_time_refuses_a_naive_instant() -> None:
    with pytest.raises(ValueError, match="no timezone"):
        format_time(datetime(2026, 1, 1))  # noqa: DTZ001 - naive on purpose


def test_ce_time_is_the_scheduled_instant() -> None:
    scheduled = SCHEDULED + timedelta(hours=5)
    headers = dict(render_headers(build_template(make_spec()), scheduled))
    assert headers["ce-time"] == "2026-11-27T03:00:00Z"
    assert headers["ce-id"] == event_id("uid-1", scheduled)
