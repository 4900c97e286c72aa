"""Admission reviews of PingSources: every rule refused with its field named, the rest allowed."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import pytest

from mtping.admission import JSON_DATA_WARNING, PLACEHOLDER_UID, MalformedReview, review
from mtping.model import Limits, PingSourceSpec, parse_source
from mtping.model.defaults import LimitsHolder

SINK = {"uri": "http://sink.example/"}
NOT_PEM = "MIIBszCCAVmgAwIBAgIUZ"


def parse(obj: Mapping[str, Any]) -> PingSourceSpec:
    return parse_source(obj, limits=Limits(max_data_bytes=64))


def pingsource(spec: Mapping[str, Any], *, version: str = "v1") -> dict[str, Any]:
    return {
        "apiVersion": f"sources.knative.dev/{version}",
        "kind": "PingSource",
        "metadata": {"name": "ping", "namespace": "team-a", "uid": "4a6d0d1e"},
        "spec": dict(spec),
    }


def admission_review(
    obj: Mapping[str, Any] | None,
    *,
    operation: str = "CREATE",
    old: Mapping[str, Any] | None = None,
    kind: str = "PingSource",
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": "sources.knative.dev", "version": "v1", "kind": kind},
        "resource": {"group": "sources.knative.dev", "version": "v1", "resource": "pingsources"},
        "name": "ping",
        "namespace": "team-a",
        "operation": operation,
        "object": obj,
        "oldObject": old,
    }
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def response_to(spec: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
    answer = review(admission_review(pingsource(spec), **kwargs), parse=parse)
    assert (answer["apiVersion"], answer["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    assert answer["response"]["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002"
    response: dict[str, Any] = answer["response"]
    return response


BAD_SOURCES = [
    pytest.param({"schedule": "61 * * * *"}, "spec.schedule", "61", id="minute-out-of-range"),
    pytest.param({"schedule": "* * * *"}, "spec.schedule", "fields", id="four-fields"),
    pytest.param({"schedule": "@every 1m"}, "spec.schedule", "@every", id="every-descriptor"),
    pytest.param({"schedule": "0 0 L * *"}, "spec.schedule", "L", id="quartz-only-form"),
    pytest.param({"timezone": "UTC+8"}, "spec.timezone", "'Etc/GMT-8'", id="utc-offset"),
    pytest.param({"timezone": "CST"}, "spec.timezone", "'America/Chicago'", id="abbreviation"),
    pytest.param(
        {"timezone": "europe/berlin"}, "spec.timezone", "'Europe/Berlin'", id="lower-case"
    ),
    pytest.param(
        {"schedule": "CRON_TZ=Mars/Olympus * * * * *"}, "spec.schedule", "Mars", id="tz-prefix"
    ),
    pytest.param({"sink": None}, "spec.sink", "set ref or uri", id="no-sink"),
    pytest.param({"sink": {}}, "spec.sink", "must set ref or uri", id="empty-sink"),
    pytest.param(
        {"sink": {"ref": {"apiVersion": "v1", "kind": "Service", "name": "s"}, "uri": SINK["uri"]}},
        "spec.sink.uri",
        "relative",
        id="ref-with-absolute-uri",
    ),
    pytest.param({"sink": {"uri": "http:///path"}}, "spec.sink.uri", "host", id="uri-no-host"),
    pytest.param(
        {"sink": {"uri": "ftp://files.example/"}}, "spec.sink.uri", "http or https", id="ftp"
    ),
    pytest.param({"sink": {"uri": "/relative"}}, "spec.sink.uri", "absolute", id="relative-uri"),
    pytest.param(
        {
            "sink": {
                "ref": {"apiVersion": "v1", "kind": "Service", "name": "s", "namespace": "other"}
            }
        },
        "spec.sink.ref.namespace",
        "'team-a'",
        id="ref-in-another-namespace",
    ),
    pytest.param(
        {"sink": {"ref": {"apiVersion": "v1", "kind": "Service"}}},
        "spec.sink.ref.name",
        "missing",
        id="ref-without-name",
    ),
    pytest.param(
        {"sink": {**SINK, "CACerts": NOT_PEM}}, "spec.sink.CACerts", "PEM", id="cacerts-not-pem"
    ),
    pytest.param(
        {"data": "a", "dataBase64": "YQ=="}, "spec.dataBase64", "at most one", id="data-and-b64"
    ),
    pytest.param({"dataBase64": "abc"}, "spec.dataBase64", "base64", id="bad-base64"),
    pytest.param(
        {"contentType": "application/json", "data": "{not json"},
        "spec.data",
        "not valid JSON",
        id="data-not-json",
    ),
    pytest.param(
        {"contentType": "application/json", "dataBase64": base64.b64encode(b"[1,").decode()},
        "spec.dataBase64",
        "not valid JSON",
        id="base64-not-json",
    ),
    pytest.param(
        {"data": "x" * 65},
        "spec.data",
        "65 bytes, over the limit of 64 bytes (data-max-size",
        id="over-data-max-size",
    ),
    pytest.param(
        {"dataBase64": base64.b64encode(b"x" * 49).decode()},
        "spec.dataBase64",
        "68 bytes, over the limit of 64",
        id="base64-measured-before-decoding",
    ),
    pytest.param(
        {"ceOverrides": {"extensions": {"id": "x"}}},
        "spec.ceOverrides.extensions.id",
        "'id' is a CloudEvents context attribute",
        id="reserved-extension",
    ),
    pytest.param(
        {"ceOverrides": {"extensions": {"my-ext": "x"}}},
        "spec.ceOverrides.extensions['my-ext']",
        "letters a-z and digits",
        id="bad-extension-name",
    ),
    pytest.param(
        {"ceOverrides": {"extensions": {"team": "a\nb"}}},
        "spec.ceOverrides.extensions.team",
        "control character",
        id="extension-value-control-char",
    ),
]


@pytest.mark.parametrize(("changes", "field", "reason"), BAD_SOURCES)
def test_create_of_a_bad_source_is_denied_naming_the_field(
    changes: dict[str, Any], field: str, reason: str
) -> None:
    spec = {
        k: v for k, v in {"schedule": "* * * * *", "sink": SINK, **changes}.items() if v is not None
    }
    response = response_to(spec)

    assert response["allowed"] is False
    status = response["status"]
    assert (status["code"], status["reason"], status["status"]) == (422, "Invalid", "Failure")
    assert status["message"].startswith(f"{field}: "), status["message"]
    assert reason in status["message"]
    causes = status["details"]["causes"]
    assert [cause["field"] for cause in causes] == [field]
    assert reason in causes[0]["message"]
    assert causes[0]["type"] == "FieldValueInvalid"
    assert status["details"]["kind"] == "PingSource"


def test_every_problem_is_one_line_of_the_message() -> None:
    response = response_to({"schedule": "@every 1m", "timezone": "UTC+8", "sink": {}})

    lines = response["status"]["message"].splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == ["spec.timezone", "spec.sink"]
    assert len(response["status"]["details"]["causes"]) == 2


def test_a_good_source_is_allowed_without_warnings() -> None:
    response = response_to(
        {
            "schedule": "*/5 * * * *",
            "timezone": "Europe/Berlin",
            "contentType": "application/json",
            "data": '{"ok": true}',
            "ceOverrides": {"extensions": {"team": "a"}},
            "sink": {"ref": {"apiVersion": "v1", "kind": "Service", "name": "s"}, "uri": "/p"},
        }
    )
    assert response == {"uid": response["uid"], "allowed": True}


def test_v1beta1_json_data_is_allowed_with_a_deprecation_warning() -> None:
    obj = pingsource({"jsonData": '{"a": 1}', "sink": SINK}, version="v1beta1")
    response = review(admission_review(obj), parse=parse)["response"]
    assert response["allowed"] is True
    assert response["warnings"] == [JSON_DATA_WARNING]


def test_update_changing_the_spec_to_a_bad_one_is_denied() -> None:
    old = pingsource({"schedule": "* * * * *", "sink": SINK})
    new = pingsource({"schedule": "* * * * * * *", "sink": SINK})
    response = review(admission_review(new, operation="UPDATE", old=old), parse=parse)["response"]
    assert response["allowed"] is False
    assert response["status"]["details"]["causes"][0]["field"] == "spec.schedule"


def test_update_leaving_a_bad_spec_unchanged_is_allowed_with_a_warning() -> None:
    """An object admitted while the webhook was down stays editable: labels, finalizers."""
    old = pingsource({"timezone": "CST", "sink": SINK})
    new = {**old, "metadata": {**old["metadata"], "labels": {"team": "a"}}}
    response = review(admission_review(new, operation="UPDATE", old=old), parse=parse)["response"]
    assert response["allowed"] is True
    (warning,) = response["warnings"]
    assert warning.startswith("this PingSource is invalid and is not scheduled: spec.timezone: ")


@pytest.mark.parametrize("operation", ["DELETE", "CONNECT"])
def test_other_operations_are_allowed_unchecked(operation: str) -> None:
    request = admission_review(None, operation=operation)
    assert review(request, parse=parse)["response"]["allowed"] is True


def test_other_kinds_are_allowed_unchecked() -> None:
    request = admission_review(pingsource({"sink": {}}), kind="ApiServerSource")
    assert review(request, parse=parse)["response"]["allowed"] is True


def test_identity_missing_from_the_object_is_taken_from_the_request() -> None:
    seen: list[Mapping[str, Any]] = []

    def recording_parse(obj: Mapping[str, Any]) -> PingSourceSpec:
        seen.append(obj)
        return parse(obj)

    obj = {"spec": {"sink": SINK}, "metadata": {}}
    response = review(admission_review(obj), parse=recording_parse)["response"]
    assert response["allowed"] is True
    assert seen[0]["metadata"] == {"namespace": "team-a", "name": "ping", "uid": PLACEHOLDER_UID}


def test_limits_are_read_when_each_review_is_made() -> None:
    holder = LimitsHolder()
    request = admission_review(pingsource({"data": "0123456789", "sink": SINK}))

    def current(obj: Mapping[str, Any]) -> PingSourceSpec:
        return parse_source(obj, limits=holder.get())

    assert review(request, parse=current)["response"]["allowed"] is True
    holder.current = Limits(max_data_bytes=9)
    assert review(request, parse=current)["response"]["allowed"] is False


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(None, id="null"),
        pytest.param([], id="array"),
        pytest.param({"apiVersion": "admission.k8s.io/v1beta1", "request": {}}, id="v1beta1"),
        pytest.param({"apiVersion": "admission.k8s.io/v1"}, id="no-request"),
        pytest.param({"apiVersion": "admission.k8s.io/v1", "request": {"uid": 7}}, id="bad-uid"),
        pytest.param(admission_review(None), id="create-without-object"),
    ],
)
def test_a_malformed_review_is_refused(body: object) -> None:
    with pytest.raises(MalformedReview):
        review(body, parse=parse)
