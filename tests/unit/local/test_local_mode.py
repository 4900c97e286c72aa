"""`mtping local` end to end: files -> the real engine -> a real HTTP receiver on 127.0.0.1.

Sources fire every second (six-field schedules), so each test waits about a second per event.
The last test runs the real command in a subprocess and stops it with SIGINT.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

import aiohttp
import yaml

from mtping.event import build_template, event_id, render_headers
from mtping.lifecycle import Stopper
from mtping.local.app import LocalOptions, run_local
from mtping.local.loading import local_uid, with_local_defaults
from mtping.model import parse_source
from tests.unit.local.conftest import Received, Receiver

ROOT = Path(__file__).parents[3]


def ping_source(sink: Mapping[str, object], *, data: str = '{"n": 1}') -> dict[str, object]:
    return {
        "apiVersion": "sources.knative.dev/v1",
        "kind": "PingSource",
        "metadata": {"name": "heartbeat"},
        "spec": {
            "schedule": "* * * * * *",
            "contentType": "application/json",
            "data": data,
            "ceOverrides": {"extensions": {"team": "demo", "note": "a b%"}},
            "sink": sink,
        },
    }


def write(path: Path, document: dict[str, object]) -> None:
    path.write_text(yaml.safe_dump(document))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def local_mode(
    options: LocalOptions, *, status: io.StringIO, events: io.StringIO | None = None
) -> AsyncIterator[None]:
    """`run_local` in the background; on exit, a stop request and its exit code must be 0."""
    stopper = Stopper()
    task = asyncio.create_task(run_local(options, stopper=stopper, status=status, events=events))
    try:
        yield
    finally:
        stopper.requested.set()
        assert await asyncio.wait_for(task, 5) == 0


async def within(seconds: float, condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.01)


def scheduled_instant(request: Received) -> datetime:
    return datetime.fromisoformat(request.headers["ce-time"])


async def test_local_mode_sends_exactly_what_the_engine_renders(
    tmp_path: Path, receiver: Receiver
) -> None:
    document = ping_source({"uri": receiver.url})
    write(tmp_path / "heartbeat.yaml", document)
    metrics_port = free_port()
    options = LocalOptions(paths=(tmp_path,), metrics_port=metrics_port)
    async with local_mode(options, status=io.StringIO()):
        request = await receiver.wait_for(1, within=3)
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{metrics_port}/metrics") as metrics,
        ):
            assert metrics.status == 200
            assert "mtping_sources_scheduled 1.0" in await metrics.text()

    instant = scheduled_instant(request)
    spec = parse_source(with_local_defaults(document))
    expected = render_headers(build_template(spec), instant)  # the cluster mode code path
    names = {name.lower() for name, _ in expected}
    sent = [(name.decode(), value.decode()) for name, value in request.raw_headers]
    assert [header for header in sent if header[0].lower() in names] == expected
    assert request.body == b'{"n": 1}'
    assert instant.microsecond == 0 and request.headers["ce-time"].endswith("Z")
    assert dict(expected) == {
        "ce-specversion": "1.0",
        "ce-type": "dev.knative.sources.ping",
        "ce-source": "/apis/v1/namespaces/default/pingsources/heartbeat",
        "ce-note": "a%20b%25",
        "ce-team": "demo",
        "content-type": "application/json",
        "Kn-Namespace": "default",
        "ce-id": event_id(local_uid("default", "heartbeat"), instant),
        "ce-time": request.headers["ce-time"],
    }


async def test_display_is_the_sink_of_ref_sources(tmp_path: Path) -> None:
    ref = {"ref": {"apiVersion": "v1", "kind": "Service", "name": "event-display"}}
    write(tmp_path / "heartbeat.yaml", ping_source(ref))
    status, events = io.StringIO(), io.StringIO()
    async with local_mode(
        LocalOptions(paths=(tmp_path,), display=True), status=status, events=events
    ):
        await within(3, lambda: "Data," in events.getvalue())
    printed = events.getvalue().split("☁️  cloudevents.Event\n")[1].splitlines()
    time_line = printed[5]
    instant = datetime.fromisoformat(time_line.removeprefix("  time: "))
    assert printed[:11] == [
        "Context Attributes,",
        "  specversion: 1.0",
        "  type: dev.knative.sources.ping",
        "  source: /apis/v1/namespaces/default/pingsources/heartbeat",
        f"  id: {event_id(local_uid('default', 'heartbeat'), instant)}",
        time_line,
        "  datacontenttype: application/json",
        "Extensions,",
        "  note: a b%",
        "  team: demo",
        "Data,",
    ]
    assert printed[11:14] == ["  {", '    "n": 1', "  }"]
    assert "display listening on http://127.0.0.1:" in status.getvalue()
    assert "added    default/heartbeat  * * * * * * UTC -> http://127.0.0.1:" in status.getvalue()


async def test_edits_reach_the_receiver_and_a_broken_edit_keeps_the_old_source(
    tmp_path: Path, receiver: Receiver
) -> None:
    path = tmp_path / "heartbeat.yaml"
    write(path, ping_source({"uri": receiver.url}, data='{"v": 1}'))
    status = io.StringIO()
    async with local_mode(LocalOptions(paths=(tmp_path,)), status=status):
        await receiver.wait_for(1, within=3)

        write(path, ping_source({"uri": receiver.url}, data='{"v": 2}'))
        await within(1.0, lambda: "changed  default/heartbeat" in status.getvalue())
        count = len(receiver.requests)
        assert (await receiver.wait_for(count + 1, within=1.5)).body == b'{"v": 2}'

        path.write_text(path.read_text().replace("schedule:", "schedule: [", 1))
        await within(1.0, lambda: "kept     the last good version" in status.getvalue())
        assert f"invalid  {path}:1: yaml: line " in status.getvalue()
        count = len(receiver.requests)
        assert (await receiver.wait_for(count + 1, within=1.5)).body == b'{"v": 2}'

        path.unlink()
        await within(1.0, lambda: "removed  default/heartbeat" in status.getvalue())
        await asyncio.sleep(0.05)  # a tick fired just before the removal may still be landing
        count = len(receiver.requests)
        await asyncio.sleep(1.2)  # over a full period of the schedule: nothing more may come
        assert len(receiver.requests) == count


async def test_a_missing_path_is_refused() -> None:
    status = io.StringIO()
    assert await run_local(LocalOptions(paths=(Path("/no/such/folder"),)), status=status) == 2
    assert status.getvalue() == "mtping local: no such file or folder: /no/such/folder\n"


async def test_the_command_prints_events_and_stops_cleanly_on_sigint() -> None:
    """What `make run` does: the samples, fired at the built-in display, until Ctrl-C."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mtping",
        "local",
        "config/samples",
        "--display",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        started = time.monotonic()
        async with asyncio.timeout(15):
            while (line := await process.stdout.readline()) != "☁️  cloudevents.Event\n".encode():
                assert line, "stdout closed before the first event"
        assert time.monotonic() - started < 15
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(process.communicate(), 15)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    errors = stderr.decode()
    assert "Traceback" not in errors
    assert "added    default/every-2s  */2 * * * * * UTC -> http://127.0.0.1:" in errors
    assert "added    default/test-ping-source  */1 * * * * UTC -> http://127.0.0.1:" in errors
