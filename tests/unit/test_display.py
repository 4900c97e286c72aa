"""The built-in display: a real aiohttp receiver on 127.0.0.1, fed what mtping sends, what the
CloudEvents SDK sends in structured mode, batches, and requests that are not CloudEvents."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
import pytest
from cloudevents.core.bindings.http import to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from mtping.console import Console
from mtping.display import (
    EventPrinter,
    ReceivedEvent,
    build_app,
    event_as_json,
    format_event,
    parse_request,
    serving,
)
from mtping.event import build_template, render_headers
from mtping.lifecycle import Stopper
from mtping.local.app import DisplayOptions, run_display
from mtping.model import parse_source

INSTANT = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
SOURCE = {
    "metadata": {"namespace": "default", "name": "heartbeat", "uid": "uid-1"},
    "spec": {
        "contentType": "application/json",
        "data": '{"message": "hello, world!", "n": [1, 2]}',
        "ceOverrides": {"extensions": {"team": "demo", "note": "a b%"}},
        "sink": {"uri": "http://127.0.0.1:9/"},
    },
}


@dataclass
class Display:
    url: str
    received: list[ReceivedEvent]
    session: aiohttp.ClientSession

    async def post(
        self, body: bytes, headers: dict[str, str] | list[tuple[str, str]]
    ) -> tuple[int, str]:
        async with self.session.post(
            self.url + "some/path", data=body, headers=headers
        ) as response:
            return response.status, await response.text()


@pytest.fixture
async def display() -> AsyncIterator[Display]:
    received: list[ReceivedEvent] = []
    async with (
        serving(build_app(received.append), host="127.0.0.1", port=0) as url,
        aiohttp.ClientSession() as session,
    ):
        yield Display(url, received, session)


def mtping_request() -> tuple[list[tuple[str, str]], bytes]:
    template = build_template(parse_source(SOURCE))
    return render_headers(template, INSTANT), template.body


async def test_prints_what_mtping_sends_as_knatives_event_display(display: Display) -> None:
    headers, body = mtping_request()
    assert await display.post(body, headers) == (200, "")
    [event] = display.received
    event_id = dict(headers)["ce-id"]
    assert format_event(event) == "\n".join(
        [
            "☁️  cloudevents.Event",
            "Context Attributes,",
            "  specversion: 1.0",
            "  type: dev.knative.sources.ping",
            "  source: /apis/v1/namespaces/default/pingsources/heartbeat",
            f"  id: {event_id}",
            "  time: 2026-03-29T01:00:00Z",
            "  datacontenttype: application/json",
            "Extensions,",
            "  note: a b%",
            "  team: demo",
            "Data,",
            "  {",
            '    "message": "hello, world!",',
            '    "n": [',
            "      1,",
            "      2",
            "    ]",
            "  }",
        ]
    )
    assert event.data == body  # kept as sent, not re-encoded


async def test_reads_the_sdks_structured_mode(display: Display) -> None:
    event = CloudEvent(
        attributes={
            "type": "com.example.test",
            "source": "/sdk",
            "id": "abc",
            "time": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
            "subject": "s",
            "flag": True,
        },
        data={"a": 1},
    )
    message = to_structured(event, JSONFormat())
    assert await display.post(message.body, message.headers) == (200, "")
    [received] = display.received
    assert received.context == (
        ("specversion", "1.0"),
        ("type", "com.example.test"),
        ("source", "/sdk"),
        ("subject", "s"),
        ("id", "abc"),
        ("time", "2026-01-02T03:04:05.678Z"),
    )
    assert received.extensions == (("flag", True),)
    assert format_event(received).endswith('Extensions,\n  flag: true\nData,\n  {\n    "a": 1\n  }')


async def test_reads_a_batch_and_binary_data_base64(display: Display) -> None:
    first = {"specversion": "1.0", "id": "1", "source": "/b", "type": "t", "data": "plain"}
    second = {
        "specversion": "1.0",
        "id": "2",
        "source": "/b",
        "type": "t",
        "datacontenttype": "application/octet-stream",
        "data_base64": base64.b64encode(b"\x00\x01").decode(),
    }
    status, _ = await display.post(
        json.dumps([first, second]).encode(),
        {"content-type": "application/cloudevents-batch+json"},
    )
    assert status == 200
    assert [event.attribute("id") for event in display.received] == ["1", "2"]
    assert display.received[0].data == b'"plain"'  # JSON data: no datacontenttype means JSON
    assert display.received[1].data == b"\x00\x01" and display.received[1].base64
    assert "\nData (binary),\n" in format_event(display.received[1])
    assert event_as_json(display.received[1])["data_base64"] == "AAE="


@pytest.mark.parametrize(
    ("headers", "body", "status", "reason"),
    [
        (
            {"content-type": "application/json"},
            b'{"hello": "world"}',
            400,
            "not a CloudEvent: no ce-specversion header (binary mode) and the content type is "
            "'application/json', not application/cloudevents+json (structured mode)",
        ),
        (
            {"ce-specversion": "1.0", "ce-source": "/s", "ce-type": "t"},
            b"",
            400,
            "missing required attribute(s): id",
        ),
        (
            {"ce-specversion": "2.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t"},
            b"",
            400,
            "invalid CloudEvent: specversion: Attribute 'specversion' must be '1.0'",
        ),
        (
            {"content-type": "application/cloudevents+json"},
            b'{"specversion": "1.0", "id": "1", "source": "/s"}',
            400,
            "missing required attribute(s): type",
        ),
        (
            {"content-type": "application/cloudevents+json"},
            b"[1]",
            400,
            "a structured CloudEvent must be a JSON object, got array",
        ),
        (
            {"content-type": "application/cloudevents-batch+json"},
            b'[{"specversion": "1.0"}]',
            400,
            "batch event 0: missing required attribute(s): id, source, type",
        ),
        (
            {"content-type": "application/cloudevents+xml"},
            b"<event/>",
            415,
            "unsupported event format 'application/cloudevents+xml': "
            "only application/cloudevents+json is read",
        ),
    ],
)
async def test_refuses_what_is_not_a_cloudevent_and_says_why(
    display: Display, headers: dict[str, str], body: bytes, status: int, reason: str
) -> None:
    assert await display.post(body, headers) == (status, reason + "\n")
    assert display.received == []


async def test_healthz_like_knatives_display(display: Display) -> None:
    async with display.session.get(display.url + "healthz") as response:
        assert response.status == 204


def test_a_missing_time_is_not_invented() -> None:
    [event] = parse_request(
        {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t"}, b""
    )
    assert [name for name, _ in event.context] == ["specversion", "type", "source", "id"]
    assert event.data is None
    assert "Data" not in format_event(event)


def test_json_lines_output() -> None:
    headers, body = mtping_request()
    [event] = parse_request(dict(headers), body)
    output = io.StringIO()
    EventPrinter(Console(output, color=False), as_json=True)(event)
    line = output.getvalue()
    assert line.endswith("}\n") and line.count("\n") == 1
    assert json.loads(line) == {
        "specversion": "1.0",
        "type": "dev.knative.sources.ping",
        "source": "/apis/v1/namespaces/default/pingsources/heartbeat",
        "id": dict(headers)["ce-id"],
        "time": "2026-03-29T01:00:00Z",
        "datacontenttype": "application/json",
        "note": "a b%",
        "team": "demo",
        "data": {"message": "hello, world!", "n": [1, 2]},
    }


def test_colour_only_when_asked() -> None:
    headers, body = mtping_request()
    [event] = parse_request(dict(headers), body)
    plain, colored = io.StringIO(), io.StringIO()
    EventPrinter(Console(plain, color=False))(event)
    EventPrinter(Console(colored, color=True))(event)
    assert "\x1b[" not in plain.getvalue()
    assert colored.getvalue().startswith("\x1b[1;36m☁️  cloudevents.Event\x1b[0m\n")


def test_non_json_data_is_printed_as_text() -> None:
    headers = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t"}
    [event] = parse_request({**headers, "content-type": "text/plain"}, b"hi {there")
    assert format_event(event).endswith("Data,\n  hi {there")
    assert event_as_json(event)["data"] == "hi {there"


async def test_the_display_command_serves_until_stopped_and_reports_a_busy_port() -> None:
    stopper, status, events = Stopper(), io.StringIO(), io.StringIO()
    options = DisplayOptions(host="127.0.0.1", port=0)
    task = asyncio.create_task(run_display(options, stopper=stopper, status=status, events=events))
    async with asyncio.timeout(2):
        while "listening on" not in status.getvalue():
            await asyncio.sleep(0.01)
    url = status.getvalue().split("listening on ")[1].split()[0]
    headers, body = mtping_request()
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers):
        pass
    assert events.getvalue().startswith("☁️  cloudevents.Event\nContext Attributes,\n")
    port = int(url.rsplit(":", 1)[1].strip("/"))
    busy = io.StringIO()
    taken = DisplayOptions(host="127.0.0.1", port=port)
    assert await run_display(taken, stopper=Stopper(), status=busy) == 1
    assert busy.getvalue().startswith(f"mtping display: cannot listen on 127.0.0.1:{port}: ")
    stopper.requested.set()
    assert await task == 0
