"""The built-in event display: a CloudEvents HTTP receiver that prints every event it gets.

It prints like Knative's `event_display` (the Go SDK's `Event.String()`): a `☁️  cloudevents.Event`
line, the context attributes in the SDK's order, extensions sorted by name, and the data,
JSON pretty-printed. With `--json` it prints one object per line instead: the event in the
CloudEvents JSON format (attributes and extensions at the top level, `data` or `data_base64`).

It accepts binary mode (`ce-*` headers), structured mode (`application/cloudevents+json`) and
batches (`application/cloudevents-batch+json`). Attributes are decoded and validated by the
CloudEvents SDK (`cloudevents.core.bindings.http`), with one guard: the SDK fills in a missing
`specversion`, `id` or `time` (it is also an event producer), which a receiver must not do, so
those are checked first and a missing `time` stays missing. The body of a binary event is kept
as received, not re-encoded. A request that is not a CloudEvent gets a 400 (415 for an event
format other than JSON) whose body says why, and nothing is printed. `GET /healthz` answers 204,
as Knative's display does. Two small departures from Go: any JSON media type (`+json`, or a
structured event without one, which the spec says is JSON) is pretty-printed, not only
`application/json`; times show microseconds at most (Python datetimes). This module never
sends anything and keeps no state.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from aiohttp import web
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.common import get_event_factory_for_version
from cloudevents.core.bindings.http import HTTPMessage, from_binary, from_structured
from cloudevents.core.exceptions import BaseCloudEventException, CloudEventValidationError
from cloudevents.core.formats.json import JSONFormat

from mtping.console import Console, Style
from mtping.event import format_time
from mtping.model.reader import json_type

STRUCTURED: Final = "application/cloudevents+json"
BATCH: Final = "application/cloudevents-batch+json"
EVENT_FORMAT_PREFIX: Final = "application/cloudevents"
HEALTHZ: Final = "/healthz"
HEADER_LINE: Final = "☁️  cloudevents.Event"
REQUIRED: Final = ("specversion", "id", "source", "type")
# The Go SDK's order (EventContextV1/V03.String()); anything else is an extension.
CONTEXT_ORDER: Final = (
    "specversion",
    "type",
    "source",
    "subject",
    "id",
    "time",
    "dataschema",
    "schemaurl",
    "datacontenttype",
    "datacontentencoding",
)
# Structured mode: "If the datacontenttype is unspecified, processing SHOULD proceed as if it
# were set to application/json" (CloudEvents JSON format 1.0, section 3.1).
STRUCTURED_DEFAULT_MEDIA_TYPE: Final = "application/json"
MAX_BODY: Final = 4 * 1024 * 1024
_FORMAT: Final = JSONFormat()

ExtensionValue = str | int | float | bool


class NotACloudEvent(ValueError):
    """The request is not a CloudEvent this receiver can read; `status` is the HTTP answer."""

    def __init__(self, reason: str, *, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True, slots=True)
class ReceivedEvent:
    """One event as received: attributes as text, in display order; extensions by name."""

    context: tuple[tuple[str, str], ...]
    extensions: tuple[tuple[str, ExtensionValue], ...]
    data: bytes | None
    media_type: str
    """Media type of `data` without parameters, "" when none was given."""
    base64: bool = False
    """The data came as `data_base64` (structured mode): binary, printed raw."""

    def attribute(self, name: str) -> str | None:
        return dict(self.context).get(name)


# --- parsing --------------------------------------------------------------------------------


def parse_request(headers: Mapping[str, str], body: bytes) -> list[ReceivedEvent]:
    """The events of one HTTP request, or NotACloudEvent saying why there are none."""
    media_type = _media_type(headers.get("content-type", ""))
    if media_type == BATCH:
        return _batch(body)
    if media_type.startswith(EVENT_FORMAT_PREFIX):
        if media_type != STRUCTURED:
            raise NotACloudEvent(
                f"unsupported event format {media_type!r}: only {STRUCTURED} is read", status=415
            )
        return [_structured(_json(body, what="a structured CloudEvent"))]
    return [_binary(headers, body, media_type)]


def _binary(headers: Mapping[str, str], body: bytes, media_type: str) -> ReceivedEvent:
    attributes = {
        name.lower(): value
        for name, value in headers.items()
        if name.lower().startswith("ce-") or name.lower() == "content-type"
    }
    if "ce-specversion" not in attributes:
        raise NotACloudEvent(
            "not a CloudEvent: no ce-specversion header (binary mode) and the content type "
            f"is {media_type or 'missing'!r}, not {STRUCTURED} (structured mode)"
        )
    # An empty body for the SDK: it would decode JSON data into objects; the bytes stay ours.
    event = _read(lambda: from_binary(HTTPMessage(attributes, b""), _FORMAT, _strict_factory))
    return _received(event, data=body or None, media_type=media_type)


def _structured(document: object) -> ReceivedEvent:
    if not isinstance(document, dict):
        raise NotACloudEvent(
            f"a structured CloudEvent must be a JSON object, got {json_type(document)}"
        )
    message = HTTPMessage({}, json.dumps(document).encode())
    event = _read(lambda: from_structured(message, _FORMAT, _strict_factory))
    media_type = _media_type(event.get_datacontenttype() or STRUCTURED_DEFAULT_MEDIA_TYPE)
    data = event.get_data()
    if isinstance(data, bytes):
        return _received(event, data=data, media_type=media_type, base64=True)
    return _received(event, data=_structured_data(data, media_type), media_type=media_type)


def _structured_data(data: object, media_type: str) -> bytes | None:
    if data is None:
        return None
    if isinstance(data, str) and not is_json(media_type):
        return data.encode()
    return json.dumps(data, ensure_ascii=False).encode()


def _batch(body: bytes) -> list[ReceivedEvent]:
    documents = _json(body, what="a batch")
    if not isinstance(documents, list):
        raise NotACloudEvent(f"a batch must be a JSON array, got {json_type(documents)}")
    events = []
    for index, document in enumerate(documents):
        try:
            events.append(_structured(document))
        except NotACloudEvent as error:
            raise NotACloudEvent(f"batch event {index}: {error}", status=error.status) from error
    return events


def _strict_factory(attributes: dict[str, Any], data: Any) -> BaseCloudEvent:
    """The SDK's event class for the version, minus its producer defaults (see docstring)."""
    missing = [name for name in REQUIRED if name not in attributes]
    if missing:
        raise NotACloudEvent(f"missing required attribute(s): {', '.join(missing)}")
    had_time = "time" in attributes
    event: BaseCloudEvent = get_event_factory_for_version(attributes["specversion"])(
        attributes, data
    )
    if not had_time:
        event.get_attributes().pop("time", None)  # the SDK stamped "now"; the sender did not
    return event


def _read(parse: Callable[[], BaseCloudEvent]) -> BaseCloudEvent:
    try:
        return parse()
    except NotACloudEvent:
        raise
    except CloudEventValidationError as error:
        raise NotACloudEvent(f"invalid CloudEvent: {_validation_reason(error)}") from error
    except (BaseCloudEventException, ValueError, TypeError) as error:
        raise NotACloudEvent(f"invalid CloudEvent: {error}") from error


def _validation_reason(error: CloudEventValidationError) -> str:
    return "; ".join(
        f"{name}: {', '.join(str(problem) for problem in problems)}"
        for name, problems in error.errors.items()
    )


def _received(
    event: BaseCloudEvent, *, data: bytes | None, media_type: str, base64: bool = False
) -> ReceivedEvent:
    attributes = event.get_attributes()
    context = tuple(
        (name, _text(attributes[name]))
        for name in CONTEXT_ORDER
        if attributes.get(name) is not None
    )
    extensions = tuple(
        sorted(
            (name, value)
            for name, value in attributes.items()
            if name not in CONTEXT_ORDER and value is not None
        )
    )
    return ReceivedEvent(context, extensions, data, media_type, base64)


def _text(value: object) -> str:
    if isinstance(value, datetime):  # `time`, parsed by the SDK: shown as Go's RFC3339Nano UTC
        return format_time(value)
    return str(value)


def _json(body: bytes, *, what: str) -> object:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise NotACloudEvent(f"{what} must be JSON: {error}") from error


def _media_type(content_type: str) -> str:
    return content_type.partition(";")[0].strip().lower()


def is_json(media_type: str) -> bool:
    return media_type in ("application/json", "text/json") or media_type.endswith("+json")


# --- printing -------------------------------------------------------------------------------


def format_event(event: ReceivedEvent, console: Console | None = None) -> str:
    """The event as Knative's event_display prints it (no trailing newline)."""
    paint = console.paint if console else _plain
    lines = [paint(HEADER_LINE, Style.BOLD, Style.CYAN), paint("Context Attributes,", Style.BOLD)]
    lines += [f"  {name}: {value}" for name, value in event.context]
    if event.extensions:
        lines.append(paint("Extensions,", Style.BOLD))
        lines += [f"  {name}: {_go_value(value)}" for name, value in event.extensions]
    if event.data is not None:
        lines.append(paint("Data (binary)," if event.base64 else "Data,", Style.BOLD))
        lines.append("  " + _data_text(event))
    return "\n".join(lines)


def _plain(text: str, *_: Style) -> str:
    return text


def _go_value(value: ExtensionValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _data_text(event: ReceivedEvent) -> str:
    assert event.data is not None
    if not event.base64 and is_json(event.media_type):
        try:
            pretty = json.dumps(json.loads(event.data), indent=2, ensure_ascii=False)
        except (ValueError, UnicodeDecodeError):
            pass
        else:
            return pretty.replace("\n", "\n  ")  # Go's json.Indent with prefix "  "
    return event.data.decode("utf-8", "replace")


def event_as_json(event: ReceivedEvent) -> dict[str, Any]:
    """The event in the CloudEvents JSON format, for `--json`."""
    document: dict[str, Any] = {**dict(event.context), **dict(event.extensions)}
    if event.data is None:
        return document
    text = None if event.base64 else _utf8_or_none(event.data)
    if text is None:
        document["data_base64"] = base64.b64encode(event.data).decode()
    elif is_json(event.media_type):
        document["data"] = _json_or_text(text)
    else:
        document["data"] = text
    return document


def _utf8_or_none(data: bytes) -> str | None:
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


def _json_or_text(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return text


class EventPrinter:
    """Prints each event to `console`, as Knative does or (`as_json`) one JSON per line."""

    def __init__(self, console: Console, *, as_json: bool = False) -> None:
        self._console = console
        self._as_json = as_json

    def __call__(self, event: ReceivedEvent) -> None:
        if self._as_json:
            self._console.line(json.dumps(event_as_json(event), ensure_ascii=False))
        else:
            self._console.line(format_event(event, self._console))


# --- serving --------------------------------------------------------------------------------


def build_app(on_event: Callable[[ReceivedEvent], None]) -> web.Application:
    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            events = parse_request(request.headers, body)
        except NotACloudEvent as error:
            return web.Response(status=error.status, text=f"{error}\n")
        for event in events:
            on_event(event)
        return web.Response(status=200)

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_get(HEALTHZ, _healthz)
    app.router.add_post("/{tail:.*}", receive)
    return app


async def _healthz(_: web.Request) -> web.Response:
    return web.Response(status=204)


@asynccontextmanager
async def serving(app: web.Application, *, host: str, port: int) -> AsyncIterator[str]:
    """Serve `app` on host:port (0: a free port) and yield its URL; stop on exit."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield f"http://{_url_host(bound_host)}:{bound_port}/"
    finally:
        await runner.cleanup()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
