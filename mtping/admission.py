"""Admission review of PingSources: an AdmissionReview v1 request in, its response out.

The validating webhook's whole decision, with the same parser (and so the same rules, Limits
and messages) that decides whether the registry schedules a source, so `kubectl apply` refuses
exactly what would never fire. A denial is a 422 `Invalid` Status listing every FieldError,
one `spec.field: reason` line each, with the same `causes` the apiserver's own schema
validation returns. CREATE and UPDATE are checked; an UPDATE that leaves the spec unchanged is
allowed (with a warning if the stored spec is invalid), so labels, annotations and finalizers
of an object admitted while the webhook was down can still be edited and removed. Everything
else (DELETE, CONNECT, other kinds) is allowed untouched.
Pure: no I/O, no clock, no logging; HTTP and TLS live in `mtping.webhook`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mtping.model import FieldError, InvalidSource, PingSourceSpec

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"
GROUP = "sources.knative.dev"
CHECKED_OPERATIONS = frozenset({"CREATE", "UPDATE"})
# The apiserver fills metadata.uid before validating admission; a request without one (a
# hand-made review) must not be refused for a field the user never writes.
PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"
JSON_DATA_WARNING = (
    "spec.jsonData is deprecated (v1beta1): use spec.data with contentType application/json"
)

Parse = Callable[[Mapping[str, Any]], PingSourceSpec]
Verdict = dict[str, Any]


class MalformedReview(ValueError):
    """The body is not an AdmissionReview v1 request; the server answers HTTP 400."""


def review(body: object, *, parse: Parse) -> dict[str, Any]:
    """The AdmissionReview answering `body`; raises MalformedReview if it is not one."""
    request = _request(body)
    response = {"uid": request["uid"], **_verdict(request, parse)}
    return {"apiVersion": API_VERSION, "kind": KIND, "response": response}


def _request(body: object) -> Mapping[str, Any]:
    if not isinstance(body, Mapping) or body.get("apiVersion") != API_VERSION:
        raise MalformedReview(f"expected an {API_VERSION} {KIND}")
    request = body.get("request")
    if not isinstance(request, Mapping) or not isinstance(request.get("uid"), str):
        raise MalformedReview(f"{KIND} has no request with a uid")
    return request


def _verdict(request: Mapping[str, Any], parse: Parse) -> Verdict:
    if request.get("operation") not in CHECKED_OPERATIONS or not _is_pingsource(request):
        return _allowed()
    new = request.get("object")
    if not isinstance(new, Mapping):
        raise MalformedReview(f"{request.get('operation')} request has no object")
    obj = _with_identity(new, request)
    if _spec_unchanged(request, new):
        return _unchanged_spec(obj, parse)
    try:
        parse(obj)
    except InvalidSource as error:
        return _denied(error.errors, request)
    return _allowed(_warnings(obj))


def _spec_unchanged(request: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    old = request.get("oldObject")
    return (
        request["operation"] == "UPDATE"
        and isinstance(old, Mapping)
        and old.get("spec") == new.get("spec")
    )


def _is_pingsource(request: Mapping[str, Any]) -> bool:
    kind = request.get("kind")
    return isinstance(kind, Mapping) and (kind.get("group"), kind.get("kind")) == (
        GROUP,
        "PingSource",
    )


def _with_identity(obj: Mapping[str, Any], request: Mapping[str, Any]) -> dict[str, Any]:
    """`obj` with namespace, name and uid filled from the request where the object lacks them."""
    metadata = obj.get("metadata")
    filled = dict(metadata) if isinstance(metadata, Mapping) else {}
    for field, value in (
        ("namespace", request.get("namespace")),
        ("name", request.get("name")),
        ("uid", PLACEHOLDER_UID),
    ):
        if not filled.get(field) and value:
            filled[field] = value
    return {**obj, "metadata": filled}


def _unchanged_spec(obj: Mapping[str, Any], parse: Parse) -> Verdict:
    """Allowed: only metadata changed. Say so if the stored spec would not be scheduled."""
    try:
        parse(obj)
    except InvalidSource as error:
        problems = "; ".join(str(problem) for problem in error.errors)
        return _allowed([f"this PingSource is invalid and is not scheduled: {problems}"])
    return _allowed(_warnings(obj))


def _warnings(obj: Mapping[str, Any]) -> list[str]:
    spec = obj.get("spec")
    return [JSON_DATA_WARNING] if isinstance(spec, Mapping) and spec.get("jsonData") else []


def _allowed(warnings: list[str] | None = None) -> Verdict:
    verdict: Verdict = {"allowed": True}
    if warnings:
        verdict["warnings"] = warnings
    return verdict


def _denied(errors: tuple[FieldError, ...], request: Mapping[str, Any]) -> Verdict:
    return {
        "allowed": False,
        "status": {
            "status": "Failure",
            "code": 422,
            "reason": "Invalid",
            "message": denial_message(errors),
            "details": {
                "name": request.get("name") or "",
                "group": GROUP,
                "kind": "PingSource",
                "causes": [
                    {"type": "FieldValueInvalid", "field": error.path, "message": error.reason}
                    for error in errors
                ],
            },
        },
    }


def denial_message(errors: tuple[FieldError, ...]) -> str:
    """One `spec.field: reason` line per problem (the apiserver prefixes which webhook said so)."""
    return "\n".join(str(error) for error in errors)
