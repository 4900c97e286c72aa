"""Unit tests of mtping.model: raw PingSource dicts in, a PingSourceSpec or InvalidSource out."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import pickle
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mtping.model import (
    FieldError,
    InvalidSource,
    Limits,
    ObservedStatus,
    PingSourceSpec,
    SinkRef,
    SourceKey,
    parse_source,
    read_status,
    source_key,
)

NAMESPACE = "team-a"
REF = {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "display"}


def make_source(
    spec: dict[str, Any] | None = None, *, api_version: str = "sources.knative.dev/v1", **top: Any
) -> dict[str, Any]:
    """A valid PingSource dict as the apiserver returns it; `spec` keys override the defaults."""
    source: dict[str, Any] = {
        "apiVersion": api_version,
        "kind": "PingSource",
        "metadata": {"namespace": NAMESPACE, "name": "ping", "uid": "uid-1", "generation": 3},
        "spec": {"schedule": "*/5 * * * *", "sink": {"ref": dict(REF)}, **(spec or {})},
    }
    source.update(top)
    return source


def _replaced(source: dict[str, Any], path: tuple[str, ...], junk: Any) -> dict[str, Any]:
    mutated = copy.deepcopy(source)
    node = mutated
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = junk
    return mutated


def with_field(path: str, value: Any) -> dict[str, Any]:
    """A valid source with the field at dotted `path` set to `value`."""
    return _replaced(make_source(), tuple(path.split(".")), value)


def errors_of(obj: Any, **kwargs: Any) -> list[FieldError]:
    with pytest.raises(InvalidSource) as caught:
        parse_source(obj, **kwargs)
    return list(caught.value.errors)


def paths_of(obj: Any, **kwargs: Any) -> list[str]:
    return [error.path for error in errors_of(obj, **kwargs)]


def single_error(obj: Any, **kwargs: Any) -> FieldError:
    errors = errors_of(obj, **kwargs)
    assert len(errors) == 1, errors
    return errors[0]


def self_signed_pem(common_name: str = "sink-ca") -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


# --- valid sources -------------------------------------------------------------------------


def test_minimal_v1_source_is_parsed_with_defaults() -> None:
    spec = parse_source(make_source({"schedule": None}))
    assert spec.key == SourceKey(NAMESPACE, "ping")
    assert (spec.uid, spec.generation) == ("uid-1", 3)
    assert spec.schedule.key == parse_source(make_source({"schedule": "* * * * *"})).schedule.key
    assert spec.schedule.timezone == "UTC"
    assert (spec.content_type, spec.data, spec.extensions) == (None, None, ())
    assert spec.sink.ref == SinkRef("serving.knative.dev/v1", "Service", "display", NAMESPACE)
    assert (spec.sink.uri, spec.sink.ca_certs, spec.sink.audience) == (None, None, None)
    assert spec.status == ObservedStatus(False, None, None, None)


def test_empty_schedule_defaults_like_knative() -> None:
    spec = parse_source(make_source({"schedule": ""}))
    assert (
        spec.schedule_fingerprint
        == parse_source(make_source({"schedule": "* * * * *"})).schedule_fingerprint
    )


def test_full_v1_source_keeps_every_field() -> None:
    source = make_source(
        {
            "timezone": "Europe/Berlin",
            "contentType": "text/plain",
            "data": "héllo",
            "ceOverrides": {"extensions": {"zeta": "z", "Alpha": "a"}},
            "sink": {"ref": dict(REF), "uri": "/path?x=1", "audience": "aud"},
        }
    )
    spec = parse_source(source)
    assert spec.schedule.timezone == "Europe/Berlin"
    assert spec.content_type == "text/plain"
    assert spec.data == "héllo".encode()
    assert spec.extensions == (("alpha", "a"), ("zeta", "z"))
    assert spec.sink.uri == "/path?x=1"
    assert spec.sink.audience == "aud"


def test_default_timezone_applies_when_spec_has_none() -> None:
    spec = parse_source(make_source(), default_timezone="America/New_York")
    assert spec.schedule.timezone == "America/New_York"


def test_data_base64_is_decoded_and_may_wrap_lines_like_go() -> None:
    spec = parse_source(make_source({"dataBase64": "AAEC\n/w==", "contentType": "app/bin"}))
    assert spec.data == b"\x00\x01\x02\xff"


def test_v1beta1_json_data_is_sent_as_application_json() -> None:
    source = make_source(
        {"jsonData": '{"hello": "world"}'}, api_version="sources.knative.dev/v1beta1"
    )
    spec = parse_source(source)
    assert spec.content_type == "application/json"
    assert spec.data == b'{"hello": "world"}'


def test_unknown_fields_are_ignored() -> None:
    source = make_source({"future": {"x": 1}}, extra=[1, 2])
    source["metadata"]["labels"] = {"a": "b"}
    assert parse_source(source).key == SourceKey(NAMESPACE, "ping")


def test_spec_is_frozen() -> None:
    spec = parse_source(make_source())
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.uid = "other"  # type: ignore[misc]


def test_parse_does_not_modify_its_input() -> None:
    source = make_source({"sink": {"ref": dict(REF)}, "ceOverrides": {"extensions": {"A": "b"}}})
    before = copy.deepcopy(source)
    parse_source(source)
    assert source == before


# --- schedule ------------------------------------------------------------------------------


def test_schedule_fingerprint_ignores_everything_but_schedule_and_zone() -> None:
    base = parse_source(make_source())
    other_data = parse_source(make_source({"data": "x", "sink": {"uri": "http://elsewhere"}}))
    other_zone = parse_source(make_source({"timezone": "Asia/Tokyo"}))
    other_cron = parse_source(make_source({"schedule": "*/6 * * * *"}))
    assert base.schedule_fingerprint == other_data.schedule_fingerprint
    assert base.schedule_fingerprint != other_zone.schedule_fingerprint
    assert base.schedule_fingerprint != other_cron.schedule_fingerprint


@pytest.mark.parametrize("schedule", ["not a cron", "61 * * * *", "@every 1m", "* * * *"])
def test_bad_schedule_is_reported_on_spec_schedule(schedule: str) -> None:
    error = single_error(make_source({"schedule": schedule}))
    assert error.path == "spec.schedule"
    assert error.reason


def test_bad_timezone_is_reported_on_spec_timezone_with_a_hint() -> None:
    error = single_error(make_source({"timezone": "europe/berlin"}))
    assert error.path == "spec.timezone"
    assert "Europe/Berlin" in error.reason


@pytest.mark.parametrize(
    ("schedule", "timezone", "path"),
    [
        ("CRON_TZ=Mars/Olympus 0 * * * *", None, "spec.schedule"),
        ("CRON_TZ=Asia/Tokyo 0 * * * *", "Europe/Berlin", "spec.schedule"),
        ("0 * * * *", "Mars/Olympus", "spec.timezone"),
    ],
)
def test_zone_errors_point_at_the_field_that_named_the_zone(
    schedule: str, timezone: str | None, path: str
) -> None:
    assert single_error(make_source({"schedule": schedule, "timezone": timezone})).path == path


def test_cron_tz_prefix_sets_the_zone_like_knative() -> None:
    spec = parse_source(make_source({"schedule": "CRON_TZ=Asia/Tokyo 0 9 * * *"}))
    assert spec.schedule.timezone == "Asia/Tokyo"


# --- metadata ------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["namespace", "name", "uid"])
def test_required_metadata_fields(field: str) -> None:
    source = make_source()
    del source["metadata"][field]
    assert str(single_error(source)) == f"metadata.{field}: missing"


@pytest.mark.parametrize("generation", ["3", 1.5, True])
def test_generation_must_be_an_integer(generation: object) -> None:
    source = make_source()
    source["metadata"]["generation"] = generation
    assert single_error(source).path == "metadata.generation"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("namespace", "Team-A"),
        ("namespace", "team.a"),
        ("namespace", "a" * 64),
        ("namespace", "team-a\r\nX-Evil: 1"),
        ("name", "-ping"),
        ("name", "ping_1"),
        ("name", "a" * 254),
        ("name", "ping/../x"),
    ],
)
def test_namespace_and_name_follow_kubernetes_naming(field: str, value: str) -> None:
    error = single_error(with_field(f"metadata.{field}", value))
    assert error.path == f"metadata.{field}"
    assert "DNS" in error.reason


@pytest.mark.parametrize(("namespace", "name"), [("a" * 63, "a" * 253), ("n1", "x.y-z.0")])
def test_longest_and_dotted_kubernetes_names_are_accepted(namespace: str, name: str) -> None:
    source = with_field("metadata.namespace", namespace)
    source["metadata"]["name"] = name
    source["spec"]["sink"]["ref"]["namespace"] = namespace
    assert parse_source(source).key == SourceKey(namespace, name)


def test_missing_generation_reads_as_zero() -> None:
    source = make_source()
    del source["metadata"]["generation"]
    assert parse_source(source).generation == 0


# --- sink ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sink",
    [
        {"uri": "http://display.team-a.svc.cluster.local"},
        {"uri": "https://example.com:8443/path?q=1"},
        {"uri": "HTTP://example.com"},
        {"uri": "http://[::1]:8080/"},
        {"ref": REF},
        {"ref": REF, "uri": "/relative/path"},
        {"ref": REF, "uri": "relative?x=1"},
        {"ref": {**REF, "namespace": NAMESPACE}},
    ],
)
def test_valid_sinks(sink: dict[str, Any]) -> None:
    assert parse_source(make_source({"sink": sink})).sink.uri == sink.get("uri")


@pytest.mark.parametrize(
    ("sink", "path", "reason_part"),
    [
        ({}, "spec.sink", "set ref or uri"),
        ({"uri": ""}, "spec.sink", "set ref or uri"),
        ({"ref": REF, "uri": "http://absolute.example"}, "spec.sink.uri", "relative"),
        ({"uri": "/relative"}, "spec.sink.uri", "absolute"),
        ({"uri": "ftp://example.com"}, "spec.sink.uri", "http or https"),
        ({"uri": "http://"}, "spec.sink.uri", "host"),
        ({"uri": "http:///path"}, "spec.sink.uri", "host"),
        ({"uri": "http://example.com:99999"}, "spec.sink.uri", "not a valid URI"),
        ({"uri": "http://[::1"}, "spec.sink.uri", "not a valid URI"),
        ({"uri": "http://a b"}, "spec.sink.uri", "spaces"),
        ({"uri": "http://a\r\nb"}, "spec.sink.uri", "control"),
        ({"uri": 42}, "spec.sink.uri", "string"),
        ({"ref": "display"}, "spec.sink.ref", "object"),
        ({"ref": {**REF, "namespace": "team-b"}}, "spec.sink.ref.namespace", "'team-a'"),
    ],
)
def test_invalid_sinks(sink: dict[str, Any], path: str, reason_part: str) -> None:
    error = single_error(make_source({"sink": sink}))
    assert error.path == path
    assert reason_part in error.reason


def test_other_namespace_ref_message_names_the_source_namespace() -> None:
    error = single_error(make_source({"sink": {"ref": {**REF, "namespace": "other"}}}))
    assert str(error) == "spec.sink.ref.namespace: must equal the PingSource's namespace 'team-a'"


def test_missing_sink() -> None:
    source = make_source()
    del source["spec"]["sink"]
    assert str(single_error(source)) == "spec.sink: missing; set ref or uri"


def test_ref_requires_api_version_kind_and_name() -> None:
    paths = paths_of(make_source({"sink": {"ref": {"namespace": NAMESPACE}}}))
    assert paths == ["spec.sink.ref.apiVersion", "spec.sink.ref.kind", "spec.sink.ref.name"]


def test_ca_certs_accept_a_pem_bundle_with_comments() -> None:
    bundle = f"# Zertifikat für Tests\n{self_signed_pem('one')}\n# two\n{self_signed_pem('two')}"
    spec = parse_source(make_source({"sink": {"uri": "https://x", "CACerts": bundle}}))
    assert spec.sink.ca_certs == bundle


@pytest.mark.parametrize(
    "ca_certs",
    [
        "not a certificate",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ],
)
def test_ca_certs_must_be_pem_certificates(ca_certs: str) -> None:
    error = single_error(make_source({"sink": {"uri": "https://x", "CACerts": ca_certs}}))
    assert error.path == "spec.sink.CACerts"


def test_truncated_pem_certificate_is_refused() -> None:
    pem = self_signed_pem()
    lines = pem.splitlines()
    broken = "\n".join([*lines[:2], *lines[-1:]])
    error = single_error(make_source({"sink": {"uri": "https://x", "CACerts": broken}}))
    assert error.path == "spec.sink.CACerts"


def test_every_certificate_of_a_bundle_must_parse() -> None:
    broken = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    bundle = self_signed_pem() + broken
    error = single_error(make_source({"sink": {"uri": "https://x", "CACerts": bundle}}))
    assert str(error) == "spec.sink.CACerts: certificate 2 of 2 is not a valid PEM certificate"


# --- data ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"data": "a", "dataBase64": "YQ=="}, "spec.dataBase64"),
        ({"data": "{}", "jsonData": "{}"}, "spec.jsonData"),
    ],
)
def test_at_most_one_data_field(fields: dict[str, str], path: str) -> None:
    error = single_error(make_source(fields))
    assert error.path == path
    assert "at most one" in error.reason


@pytest.mark.parametrize("text", ["YQ", "YQ==YQ==", "Y Q==", "é", "YQ=!"])
def test_data_base64_must_be_strict_base64(text: str) -> None:
    error = single_error(make_source({"dataBase64": text}))
    assert error.path == "spec.dataBase64"
    assert "base64" in error.reason


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "Application/JSON; charset=utf-8",
        "application/cloudevents+json",
        "text/x+json",
    ],
)
def test_json_content_types_require_json_data(content_type: str) -> None:
    error = single_error(make_source({"contentType": content_type, "data": "{not json"}))
    assert error.path == "spec.data"
    assert "not valid JSON" in error.reason


@pytest.mark.parametrize("data", ['{"a": 1}', "[1, 2]", '"text"', "42", "null"])
def test_any_json_value_is_accepted_for_json_content(data: str) -> None:
    spec = parse_source(make_source({"contentType": "application/json", "data": data}))
    assert spec.data == data.encode()


@pytest.mark.parametrize("data", ["NaN", '{"a": Infinity}', "[" * 100_000, "{} {}"])
def test_json_data_is_strict(data: str) -> None:
    error = single_error(make_source({"contentType": "application/json", "data": data}))
    assert error.path == "spec.data"


def test_json_check_applies_to_decoded_data_base64() -> None:
    bad = make_source({"contentType": "application/json", "dataBase64": "e30x"})  # "{}1"
    assert single_error(bad).path == "spec.dataBase64"
    good = make_source({"contentType": "application/json", "dataBase64": "e30="})  # "{}"
    assert parse_source(good).data == b"{}"


def test_json_body_must_be_utf8() -> None:
    utf16 = make_source({"contentType": "application/json", "dataBase64": "//57AH0A"})
    assert "UTF-8" in single_error(utf16).reason


def test_non_json_content_type_accepts_anything() -> None:
    spec = parse_source(make_source({"contentType": "text/plain", "data": "{not json"}))
    assert spec.data == b"{not json"


def test_data_with_unpaired_surrogate_is_refused() -> None:
    assert single_error(make_source({"data": "a\ud800b"})).path == "spec.data"


@pytest.mark.parametrize("content_type", ["text/plain\r\nX-Evil: 1", "tëxt/plain", "a\x00b"])
def test_content_type_must_be_header_safe(content_type: str) -> None:
    assert single_error(make_source({"contentType": content_type, "data": "x"})).path == (
        "spec.contentType"
    )


def test_blank_content_type_means_none() -> None:
    assert parse_source(make_source({"contentType": "  ", "data": "x"})).content_type is None


def test_data_max_size_measures_the_field_as_written() -> None:
    limits = Limits(max_data_bytes=4)
    assert parse_source(make_source({"data": "abcd"}), limits=limits).data == b"abcd"
    error = single_error(make_source({"data": "abcde"}), limits=limits)
    assert error == FieldError(
        "spec.data", "is 5 bytes, over the limit of 4 bytes (data-max-size in config-ping-defaults)"
    )
    # "YWJj" decodes to 3 bytes, but Knative measures the 4 written characters.
    assert parse_source(make_source({"dataBase64": "YWJj"}), limits=limits).data == b"abc"
    assert single_error(make_source({"dataBase64": "YWJjZA=="}), limits=limits).path == (
        "spec.dataBase64"
    )


def test_data_max_size_counts_utf8_bytes() -> None:
    error = single_error(make_source({"data": "ééé"}), limits=Limits(max_data_bytes=5))
    assert error.reason.startswith("is 6 bytes")


def test_hard_cap_bounds_the_decoded_body() -> None:
    limits = Limits(hard_cap_bytes=8)
    assert parse_source(make_source({"data": "x" * 8}), limits=limits).data == b"x" * 8
    error = single_error(make_source({"data": "x" * 9}), limits=limits)
    assert error.path == "spec.data"
    assert "hard cap of 8 bytes" in error.reason


@pytest.mark.parametrize(
    "kwargs", [{"max_data_bytes": -1}, {"hard_cap_bytes": 0}, {"hard_cap_bytes": -5}]
)
def test_limits_refuse_negative_sizes(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must be"):
        Limits(**kwargs)


def test_default_hard_cap_is_one_mebibyte() -> None:
    assert Limits().hard_cap_bytes == 1024 * 1024
    assert Limits().max_data_bytes is None


# --- ceOverrides.extensions ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "stored"),
    [("abc", "abc"), ("a1", "a1"), ("MyExt", "myext"), ("x" * 25, "x" * 25), ("0", "0")],
)
def test_valid_extension_names(name: str, stored: str) -> None:
    spec = parse_source(make_source({"ceOverrides": {"extensions": {name: "v"}}}))
    assert spec.extensions == ((stored, "v"),)


@pytest.mark.parametrize(
    ("name", "reason_part"),
    [
        ("", "empty"),
        ("a-b", "letters"),
        ("a_b", "letters"),
        ("ünï", "letters"),
        ("a b", "letters"),
        ("id", "context attribute"),
        ("Type", "context attribute"),
        ("source", "context attribute"),
        ("specversion", "context attribute"),
        ("time", "context attribute"),
        ("datacontenttype", "context attribute"),
        ("data", "context attribute"),
    ],
)
def test_invalid_extension_names(name: str, reason_part: str) -> None:
    error = single_error(make_source({"ceOverrides": {"extensions": {name: "v"}}}))
    assert error.path.startswith("spec.ceOverrides.extensions")
    assert reason_part in error.reason


@pytest.mark.parametrize(
    ("value", "reason_part"),
    [
        (1, "must be a string, got number"),
        (None, "must be a string, got null"),
        (["a"], "must be a string, got array"),
        ("line\nbreak", "control character U+000A"),
        ("cr\r", "control character U+000D"),
        ("del\x7f", "control character U+007F"),
        ("c1\x85", "control character U+0085"),
        ("lone\udc00", "unpaired surrogate"),
        ("non\ufffe", "noncharacter"),
        ("non\ufdd0", "noncharacter"),
    ],
)
def test_invalid_extension_values(value: object, reason_part: str) -> None:
    error = single_error(make_source({"ceOverrides": {"extensions": {"ext": value}}}))
    assert error.path == "spec.ceOverrides.extensions.ext"
    assert reason_part in error.reason


def test_extension_values_may_hold_any_printable_unicode() -> None:
    value = 'Euro € 😀 "quoted" 100% '
    spec = parse_source(make_source({"ceOverrides": {"extensions": {"ext": value, "empty": ""}}}))
    assert spec.extensions == (("empty", ""), ("ext", value))


def test_extension_names_are_case_insensitive_duplicates() -> None:
    error = single_error(make_source({"ceOverrides": {"extensions": {"ext": "a", "EXT": "b"}}}))
    assert error.path == "spec.ceOverrides.extensions.EXT"
    assert "names are case-insensitive" in error.reason


# --- status --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conditions", "ready"),
    [
        ([{"type": "Ready", "status": "True"}], True),
        ([{"type": "SinkProvided", "status": "True"}, {"type": "Ready", "status": "True"}], True),
        ([{"type": "Ready", "status": "False"}], False),
        ([{"type": "Ready", "status": "Unknown"}], False),
        ([{"type": "Ready", "status": True}], False),
        ([{"type": "SinkProvided", "status": "True"}], False),
        ([{"type": "Ready", "status": "False"}, {"type": "Ready", "status": "True"}], False),
        ([], False),
        (None, False),
        ("Ready", False),
        (["Ready"], False),
    ],
)
def test_ready_is_the_ready_condition(conditions: object, ready: bool) -> None:
    assert read_status({"conditions": conditions}).ready is ready


def test_status_sink_fields_are_read() -> None:
    status = {
        "conditions": [{"type": "Ready", "status": "True"}],
        "sinkUri": "http://display.team-a.svc.cluster.local",
        "sinkCACerts": "PEM",
        "sinkAudience": "aud",
    }
    spec = parse_source(make_source(status=status))
    assert spec.status == ObservedStatus(
        True, "http://display.team-a.svc.cluster.local", "PEM", "aud"
    )


@pytest.mark.parametrize("status", [None, "broken", [], {"sinkUri": 5, "conditions": {"a": 1}}])
def test_malformed_status_reads_as_not_ready_and_does_not_invalidate(status: object) -> None:
    spec = parse_source(make_source(status=status))
    assert spec.status == ObservedStatus(False, None, None, None)


# --- error reporting -----------------------------------------------------------------------


def test_all_errors_are_reported_together_in_field_order() -> None:
    source = make_source(
        {
            "schedule": "bogus",
            "data": "a",
            "dataBase64": "YQ==",
            "ceOverrides": {"extensions": {"id": "x"}},
            "sink": {"uri": "/relative"},
        }
    )
    del source["metadata"]["uid"]
    assert paths_of(source) == [
        "metadata.uid",
        "spec.schedule",
        "spec.dataBase64",
        "spec.ceOverrides.extensions.id",
        "spec.sink.uri",
    ]


def test_invalid_source_message_names_the_source_and_every_error() -> None:
    source = make_source({"sink": {"uri": "/relative"}, "contentType": "a\nb"})
    with pytest.raises(InvalidSource) as caught:
        parse_source(source)
    error = caught.value
    assert isinstance(error, ValueError)
    assert error.key == SourceKey(NAMESPACE, "ping")
    assert str(error) == (
        "PingSource team-a/ping is invalid: "
        "spec.contentType: must be printable ASCII: it is sent as the Content-Type header; "
        "spec.sink.uri: must be an absolute URL "
        "(a relative URI needs spec.sink.ref to resolve against)"
    )


def test_invalid_source_without_a_name_has_no_key() -> None:
    source = make_source()
    del source["metadata"]["name"]
    with pytest.raises(InvalidSource) as caught:
        parse_source(source)
    assert caught.value.key is None
    assert str(caught.value) == "PingSource is invalid: metadata.name: missing"


def test_invalid_source_survives_pickling() -> None:
    original = InvalidSource(SourceKey("a", "b"), (FieldError("spec", "bad"),))
    copy_ = pickle.loads(pickle.dumps(original))
    assert (copy_.key, copy_.errors, str(copy_)) == (original.key, original.errors, str(original))


def test_wrong_type_object_is_reported_once_not_with_each_missing_child() -> None:
    assert [str(error) for error in errors_of({"metadata": "x", "spec": "foo"})] == [
        "metadata: must be an object, got string",
        "spec: must be an object, got string",
    ]


MALFORMED: list[Any] = [
    None,
    [],
    "PingSource",
    42,
    {},
    {"metadata": None},
    {"metadata": [], "spec": {}},
    with_field("metadata", {"namespace": 1, "name": ["x"], "uid": {}}),
    with_field("spec", "foo"),
    with_field("spec", []),
    with_field("spec", None),
    make_source({"sink": []}),
    make_source({"sink": "http://x"}),
    make_source({"sink": None}),
    make_source({"sink": {"ref": []}}),
    make_source({"sink": {"ref": {"apiVersion": 1, "kind": None, "name": {}}}}),
    make_source({"sink": {"ref": REF, "uri": ["http://x"]}}),
    make_source({"sink": {"uri": "http://x", "CACerts": 5}}),
    make_source({"sink": {"uri": "http://x", "CACerts": "\udc00"}}),
    make_source({"sink": {"uri": "http://x", "audience": []}}),
    make_source({"ceOverrides": "x"}),
    make_source({"ceOverrides": {"extensions": ["a"]}}),
    make_source({"ceOverrides": {"extensions": {"a": 1}}}),
    make_source({"ceOverrides": {"extensions": {1: "a"}}}),
    make_source({"ceOverrides": {"extensions": {None: None}}}),
    make_source({"ceOverrides": {"extensions": {("a",): "b"}}}),
    make_source({"schedule": 5}),
    make_source({"schedule": ["* * * * *"]}),
    make_source({"schedule": "\x00"}),
    make_source({"schedule": "* * * * * * * *"}),
    make_source({"timezone": 1}),
    make_source({"timezone": "\udc00"}),
    make_source({"timezone": "../../etc/passwd"}),
    make_source({"data": 1}),
    make_source({"data": {"a": 1}}),
    make_source({"dataBase64": []}),
    make_source({"dataBase64": "\udc00"}),
    make_source({"jsonData": {"a": 1}}),
    make_source({"contentType": 7}),
    make_source({"contentType": "application/json", "data": "\udc00"}),
]


@pytest.mark.parametrize("obj", MALFORMED)
def test_malformed_sources_raise_invalid_source_and_nothing_else(obj: Any) -> None:
    with pytest.raises(InvalidSource) as caught:
        parse_source(obj)
    assert caught.value.errors
    assert all(isinstance(error, FieldError) and error.reason for error in caught.value.errors)


JUNK: list[Any] = [None, "foo", "", [], [1], 0, -1, 1.5, True, {"a": 1}, {}, "\udc00", "\n"]


def _leaf_paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if not isinstance(node, dict):
        return [prefix]
    paths = [prefix] if prefix else []
    for key, value in node.items():
        paths.extend(_leaf_paths(value, (*prefix, key)))
    return paths


RICH_SOURCE = make_source(
    {
        "timezone": "Europe/Berlin",
        "contentType": "application/json",
        "data": "{}",
        "ceOverrides": {"extensions": {"ext": "v"}},
        "sink": {"ref": dict(REF), "uri": "/p", "CACerts": None, "audience": "a"},
    },
    status={"conditions": [{"type": "Ready", "status": "True"}], "sinkUri": "http://x"},
)


@pytest.mark.parametrize("path", _leaf_paths(RICH_SOURCE), ids=".".join)
def test_junk_anywhere_gives_a_spec_or_invalid_source(path: tuple[str, ...]) -> None:
    for junk in JUNK:
        try:
            result = parse_source(_replaced(RICH_SOURCE, path, junk))
        except InvalidSource as error:
            assert error.errors
        else:
            assert isinstance(result, PingSourceSpec)


# --- source_key ----------------------------------------------------------------------------


def test_source_key_reads_namespace_and_name_only() -> None:
    assert source_key({"metadata": {"namespace": "a", "name": "b"}, "spec": "junk"}) == SourceKey(
        "a", "b"
    )


@pytest.mark.parametrize("obj", [None, {}, {"metadata": []}, {"metadata": {"namespace": "a"}}])
def test_source_key_raises_invalid_source(obj: Any) -> None:
    with pytest.raises(InvalidSource):
        source_key(obj)


def test_source_key_formats_as_namespace_slash_name() -> None:
    assert str(SourceKey("a", "b")) == "a/b"
