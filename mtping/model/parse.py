"""Turns one raw PingSource dict, as the apiserver returns it, into a validated PingSourceSpec.

Accepts sources.knative.dev v1 and v1beta2 (`data`, `dataBase64`, `contentType`, `timezone`)
and v1beta1 (`jsonData`, sent as application/json). Unknown fields are ignored. Any problem,
including a field of the wrong JSON type, becomes a FieldError; all of them are raised together
as one InvalidSource, never any other exception. Pure: no I/O, no clock, no logging.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mtping.model.errors import FieldError, InvalidSource
from mtping.model.reader import MALFORMED, FieldReader, json_type
from mtping.model.rules import (
    attribute_text_problem,
    ca_certs_problem,
    content_type_problem,
    decode_base64,
    extension_name_problem,
    is_json_media_type,
    json_problem,
    namespace_problem,
    object_name_problem,
    sink_uri_problem,
)
from mtping.model.source import (
    NOT_OBSERVED,
    Limits,
    ObservedStatus,
    PingSourceSpec,
    Sink,
    SinkRef,
    SourceKey,
)
from mtping.schedule import CronSchedule, ScheduleError, TimezoneError, parse_schedule

DEFAULT_SCHEDULE = "* * * * *"  # Knative's default (pkg/apis/sources/v1/ping_defaults.go)
JSON_CONTENT_TYPE = "application/json"
DATA_FIELDS = ("data", "dataBase64", "jsonData")
EXTENSIONS_PATH = "spec.ceOverrides.extensions"
ROOT_PATH = "(root)"
NO_SINK = Sink(ref=None, uri=None, ca_certs=None, audience=None)
DEFAULT_LIMITS = Limits()


def source_key(obj: Mapping[str, Any]) -> SourceKey:
    """namespace/name only, cheap enough for delete events; raises InvalidSource if absent."""
    reader = FieldReader()
    key = _read_key(reader, reader.mapping(_root(obj), "metadata", "metadata"))
    if reader.errors:
        raise InvalidSource(None, tuple(reader.errors))
    return key


def parse_source(
    obj: Mapping[str, Any],
    *,
    default_timezone: str = "UTC",
    limits: Limits = DEFAULT_LIMITS,
) -> PingSourceSpec:
    """Validate a raw PingSource; raises InvalidSource listing every problem found."""
    reader = FieldReader()
    root = _root(obj)
    metadata = reader.mapping(root, "metadata", "metadata")
    key = _read_key(reader, metadata)
    uid = reader.required_string(metadata, "uid", "metadata.uid")
    generation = reader.integer(metadata, "generation", "metadata.generation")
    spec = reader.mapping(root, "spec", "spec")
    schedule = _read_schedule(reader, spec, default_timezone)
    content_type, data = _read_payload(reader, spec, limits)
    extensions = _read_extensions(reader, spec)
    sink = _read_sink(reader, spec, key.namespace)
    if reader.errors or schedule is None:
        raise InvalidSource(key if all(key) else None, tuple(reader.errors))
    return PingSourceSpec(
        key=key,
        uid=uid,
        generation=generation,
        schedule=schedule,
        content_type=content_type,
        data=data,
        extensions=extensions,
        sink=sink,
        status=read_status(root.get("status")),
    )


def _root(obj: object) -> Mapping[str, Any]:
    if isinstance(obj, Mapping):
        return obj
    error = FieldError(ROOT_PATH, f"a PingSource must be an object, got {json_type(obj)}")
    raise InvalidSource(None, (error,))


def _read_key(reader: FieldReader, metadata: Mapping[str, Any]) -> SourceKey:
    namespace = reader.required_string(metadata, "namespace", "metadata.namespace")
    if namespace and (problem := namespace_problem(namespace)):
        reader.fail("metadata.namespace", problem)
    name = reader.required_string(metadata, "name", "metadata.name")
    if name and (problem := object_name_problem(name)):
        reader.fail("metadata.name", problem)
    return SourceKey(namespace, name)


# --- schedule -------------------------------------------------------------------------------


def _read_schedule(
    reader: FieldReader, spec: Mapping[str, Any], default_timezone: str
) -> CronSchedule | None:
    expression = reader.string(spec, "schedule", "spec.schedule") or DEFAULT_SCHEDULE
    timezone = reader.string(spec, "timezone", "spec.timezone") or None
    try:
        return parse_schedule(expression, timezone=timezone, default_timezone=default_timezone)
    except TimezoneError as error:
        # Without spec.timezone the bad zone is a CRON_TZ=/TZ= prefix in the schedule.
        from_prefix = timezone is None and "TZ=" in expression
        reader.fail("spec.schedule" if from_prefix else "spec.timezone", str(error))
    except ScheduleError as error:
        reader.fail("spec.schedule", str(error))
    return None


# --- payload --------------------------------------------------------------------------------


def _read_payload(
    reader: FieldReader, spec: Mapping[str, Any], limits: Limits
) -> tuple[str | None, bytes | None]:
    """(content type, body); body is None when the source carries no data."""
    content_type = _read_content_type(reader, spec)
    chosen = _chosen_data_field(reader, spec)
    if chosen is None:
        return content_type, None
    field, text = chosen
    if field == "jsonData":  # v1beta1: its only data field, always JSON
        content_type = JSON_CONTENT_TYPE
    body = _read_body(reader, field, text, limits)
    if body is not None and content_type and is_json_media_type(content_type):
        _check_json_body(reader, field, body, content_type)
    return content_type, body


def _chosen_data_field(reader: FieldReader, spec: Mapping[str, Any]) -> tuple[str, str] | None:
    """(field, text) of the one data field set, None when none is (or, an error, several are)."""
    texts = {field: reader.string(spec, field, f"spec.{field}") for field in DATA_FIELDS}
    present = [field for field, text in texts.items() if text]
    if len(present) > 1:
        reader.fail(f"spec.{present[1]}", f"set at most one of {', '.join(present)}")
        return None
    return (present[0], texts[present[0]]) if present else None


def _check_json_body(reader: FieldReader, field: str, body: bytes, content_type: str) -> None:
    if problem := json_problem(body):
        reader.fail(f"spec.{field}", f"{problem} (contentType is {content_type})")


def _read_content_type(reader: FieldReader, spec: Mapping[str, Any]) -> str | None:
    # Trimmed like the Go SDK's SetDataContentType, for which blank means none.
    content_type = reader.string(spec, "contentType", "spec.contentType").strip()
    if problem := content_type_problem(content_type):
        reader.fail("spec.contentType", problem)
    return content_type or None


def _read_body(reader: FieldReader, field: str, text: str, limits: Limits) -> bytes | None:
    path = f"spec.{field}"
    written = text.encode("utf-8", "replace")  # what Knative's data-max-size measures
    if limits.max_data_bytes is not None and len(written) > limits.max_data_bytes:
        reader.fail(
            path,
            f"is {len(written)} bytes, over the limit of {limits.max_data_bytes} bytes "
            "(data-max-size in config-ping-defaults)",
        )
        return None
    try:
        body = decode_base64(text) if field == "dataBase64" else _utf8(text)
    except ValueError as error:
        reader.fail(path, str(error))
        return None
    if len(body) > limits.hard_cap_bytes:
        reader.fail(
            path, f"is {len(body)} bytes, over mtping's hard cap of {limits.hard_cap_bytes} bytes"
        )
        return None
    return body


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError("is not valid Unicode text: it contains an unpaired surrogate") from error


# --- ceOverrides ----------------------------------------------------------------------------


def _read_extensions(reader: FieldReader, spec: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """Extensions with lower-cased names, sorted by name."""
    overrides = reader.mapping(spec, "ceOverrides", "spec.ceOverrides")
    raw = reader.mapping(overrides, "extensions", EXTENSIONS_PATH)
    found: dict[str, str] = {}
    for name, value in raw.items():
        path = _key_path(EXTENSIONS_PATH, name)
        if not _valid_extension(reader, path, name, value):
            continue
        if name.lower() in found:
            reader.fail(path, f"repeats extension {name.lower()!r}: names are case-insensitive")
        found[name.lower()] = value
    return tuple(sorted(found.items()))


def _valid_extension(reader: FieldReader, path: str, name: object, value: object) -> bool:
    if not isinstance(name, str):
        reader.fail(path, f"extension names must be strings, got {json_type(name)}")
        return False
    if not isinstance(value, str):
        reader.fail(path, f"must be a string, got {json_type(value)}")
        return False
    problem = extension_name_problem(name) or attribute_text_problem(value)
    if problem:
        reader.fail(path, problem)
    return problem is None


def _key_path(base: str, key: object) -> str:
    if isinstance(key, str) and key.isascii() and key.isalnum():
        return f"{base}.{key}"
    return f"{base}[{key!r}]"


# --- sink -----------------------------------------------------------------------------------


def _read_sink(reader: FieldReader, spec: Mapping[str, Any], namespace: str) -> Sink:
    raw = _sink_object(reader, spec)
    if raw is None:
        return NO_SINK
    has_ref = raw.get("ref") is not None
    return Sink(
        ref=_read_ref(reader, raw, namespace) if has_ref else None,
        uri=_read_sink_uri(reader, raw, has_ref=has_ref),
        ca_certs=_read_ca_certs(reader, raw),
        audience=reader.string(raw, "audience", "spec.sink.audience") or None,
    )


def _sink_object(reader: FieldReader, spec: Mapping[str, Any]) -> Mapping[str, Any] | None:
    raw = spec.get("sink")
    if isinstance(raw, Mapping):
        return raw
    if spec is not MALFORMED:  # else the error on spec itself says it all
        what = "missing" if raw is None else f"must be an object, got {json_type(raw)}"
        reader.fail("spec.sink", f"{what}; set ref or uri")
    return None


def _read_sink_uri(reader: FieldReader, sink: Mapping[str, Any], *, has_ref: bool) -> str | None:
    uri = reader.string(sink, "uri", "spec.sink.uri") or None
    if uri is None and not has_ref and isinstance(sink.get("uri"), str | None):
        reader.fail("spec.sink", "must set ref or uri")
    if uri is not None and (problem := sink_uri_problem(uri, with_ref=has_ref)):
        reader.fail("spec.sink.uri", problem)
    return uri


def _read_ref(reader: FieldReader, sink: Mapping[str, Any], namespace: str) -> SinkRef | None:
    ref = reader.mapping(sink, "ref", "spec.sink.ref")
    if ref is MALFORMED:
        return None
    path = "spec.sink.ref"
    api_version = reader.required_string(ref, "apiVersion", f"{path}.apiVersion")
    kind = reader.required_string(ref, "kind", f"{path}.kind")
    name = reader.required_string(ref, "name", f"{path}.name")
    ref_namespace = reader.string(ref, "namespace", f"{path}.namespace") or namespace
    if namespace and ref_namespace != namespace:
        reader.fail(f"{path}.namespace", f"must equal the PingSource's namespace {namespace!r}")
    address = reader.string(ref, "address", f"{path}.address") or None
    return SinkRef(
        api_version=api_version, kind=kind, name=name, namespace=ref_namespace, address=address
    )


def _read_ca_certs(reader: FieldReader, sink: Mapping[str, Any]) -> str | None:
    ca_certs = reader.string(sink, "CACerts", "spec.sink.CACerts")
    if ca_certs and (problem := ca_certs_problem(ca_certs)):
        reader.fail("spec.sink.CACerts", problem)
    return ca_certs or None


# --- status ---------------------------------------------------------------------------------


def read_status(raw: object) -> ObservedStatus:
    """`.status` as a controller wrote it. Lenient: a malformed status reads as not ready,
    because it is not the user's input and must not be reported as an invalid spec."""
    if not isinstance(raw, Mapping):
        return NOT_OBSERVED
    return ObservedStatus(
        ready=_is_ready(raw.get("conditions")),
        sink_uri=_text_or_none(raw.get("sinkUri")),
        sink_ca_certs=_text_or_none(raw.get("sinkCACerts")),
        sink_audience=_text_or_none(raw.get("sinkAudience")),
    )


def _is_ready(conditions: object) -> bool:
    # Like knative.dev/pkg's ConditionSet: the first condition of type Ready decides.
    if not isinstance(conditions, list):
        return False
    for condition in conditions:
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
