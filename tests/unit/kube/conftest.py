"""A fake apiserver on 127.0.0.1 for the apiserver-layer unit tests, and a client pointed at it.

`FakeApiserver` serves what mtping asks of a real one, from a script: PingSource lists (paged
with `limit`/`continue`, as one consistent snapshot per list), PingSource watches (newline
delimited JSON events, with pauses, aborted connections and clean ends), and Event create and
patch. It records every request. It is a test double: the integration tests use a real
kube-apiserver; nothing here may claim to check the apiserver's own behaviour.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from kubernetes_asyncio.client import ApiClient, Configuration

from mtping.metrics import REGISTRY

RawObject = dict[str, Any]
PINGSOURCES_PATH = "/apis/sources.knative.dev/v1/pingsources"


@dataclass(frozen=True, slots=True)
class Seen:
    """One request as the fake apiserver saw it."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any


@dataclass(frozen=True, slots=True)
class Listing:
    """One consistent list answer at `version`, served page by page as the client asks."""

    items: list[RawObject]
    version: str


@dataclass(frozen=True, slots=True)
class Failing:
    """An HTTP failure status with a Kubernetes Status body."""

    status: int
    reason: str = "InternalError"


@dataclass(frozen=True, slots=True)
class Stalling:
    """Response headers and half a body, then nothing, until the client gives up."""


@dataclass(frozen=True, slots=True)
class Pause:
    seconds: float


@dataclass(frozen=True, slots=True)
class Raw:
    """Bytes written as they are (a partial line, say)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Abort:
    """Kill the connection mid-stream, as a crashed apiserver or a dropped network would."""


@dataclass(frozen=True, slots=True)
class End:
    """Finish the stream cleanly, as the apiserver does when `timeoutSeconds` runs out."""


ListReply = Listing | Failing | Stalling
WatchStep = RawObject | Pause | Raw | Abort | End
WatchReply = list[WatchStep] | Failing


@dataclass
class FakeApiserver:
    """Scripted answers: `lists` and `watches` pop one reply per request, then the defaults;
    `continuations` likewise for the requests of a list's later pages.

    A watch script that runs out without `End` or `Abort` keeps the stream open and silent.
    Events live in `events` by (namespace, name); `event_failures` answers the next Event
    requests with those statuses (or never answers them) instead.
    """

    lists: deque[ListReply] = field(default_factory=deque)
    default_list: ListReply = field(default_factory=lambda: Listing([], "1"))
    continuations: deque[Failing | Stalling] = field(default_factory=deque)
    """Answers to the next requests for a later page (with a continue token), before pages."""
    watches: deque[WatchReply] = field(default_factory=deque)
    events: dict[tuple[str, str], RawObject] = field(default_factory=dict)
    event_failures: deque[int | Stalling] = field(default_factory=deque)
    seen: list[Seen] = field(default_factory=list)
    url: str = ""
    _snapshots: list[Listing] = field(default_factory=list)

    @property
    def list_requests(self) -> list[Seen]:
        return [s for s in self.seen if s.path == PINGSOURCES_PATH and "watch" not in s.query]

    @property
    def first_page_requests(self) -> list[Seen]:
        """One per list: the requests that start a list rather than continue one."""
        return [s for s in self.list_requests if "continue" not in s.query]

    @property
    def watch_requests(self) -> list[Seen]:
        return [s for s in self.seen if s.path == PINGSOURCES_PATH and "watch" in s.query]

    @property
    def event_requests(self) -> list[Seen]:
        return [s for s in self.seen if "/events" in s.path]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(PINGSOURCES_PATH, self._pingsources)
        app.router.add_post("/api/v1/namespaces/{namespace}/events", self._create_event)
        app.router.add_patch("/api/v1/namespaces/{namespace}/events/{name}", self._patch_event)
        return app

    async def _record(self, request: web.Request) -> Any:
        raw = await request.read()
        body = json.loads(raw) if raw else None
        content_type = request.headers.get("Content-Type", "")
        self.seen.append(
            Seen(request.method, request.path, dict(request.query), content_type, body)
        )
        return body

    async def _pingsources(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        # The client sends Python's `True`; the apiserver parses booleans as Go's ParseBool.
        if request.query.get("watch", "").lower() in ("true", "1", "t"):
            return await self._watch(request)
        token = request.query.get("continue")
        if token and self.continuations:
            return await _fail_list(request, self.continuations.popleft())
        if token:
            snapshot, offset = (int(part) for part in token.split(":"))
            return self._page(snapshot, offset, int(request.query["limit"]))
        reply = self.lists.popleft() if self.lists else self.default_list
        if not isinstance(reply, Listing):
            return await _fail_list(request, reply)
        self._snapshots.append(reply)
        return self._page(len(self._snapshots) - 1, 0, int(request.query["limit"]))

    def _page(self, snapshot: int, offset: int, limit: int) -> web.Response:
        listing = self._snapshots[snapshot]
        metadata: RawObject = {"resourceVersion": listing.version}
        if offset + limit < len(listing.items):
            metadata["continue"] = f"{snapshot}:{offset + limit}"
        page = {
            "apiVersion": "sources.knative.dev/v1",
            "kind": "PingSourceList",
            "metadata": metadata,
            "items": listing.items[offset : offset + limit],
        }
        return web.json_response(page)

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        reply = self.watches.popleft() if self.watches else []
        if isinstance(reply, Failing):
            return _status(reply)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for step in reply:
            if isinstance(step, End):
                await response.write_eof()
                return response
            await _play(step, request, response)
        await asyncio.Event().wait()  # silent until the client goes (the handler is cancelled)
        return response

    async def _create_event(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        if self.event_failures:
            return await _fail(request, self.event_failures.popleft())
        self.events[(request.match_info["namespace"], body["metadata"]["name"])] = body
        return web.json_response(body, status=201)

    async def _patch_event(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        key = (request.match_info["namespace"], request.match_info["name"])
        if self.event_failures:
            return await _fail(request, self.event_failures.popleft())
        if key not in self.events:
            return _status(Failing(404, "NotFound"))
        self.events[key].update(body)
        return web.json_response(self.events[key])

    async def start(self, port: int = 0) -> web.AppRunner:
        # handler_cancellation: a watch handler waiting forever stops when its client goes.
        runner = web.AppRunner(self.app(), handler_cancellation=True, shutdown_timeout=0.1)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        return runner


async def _play(step: WatchStep, request: web.Request, response: web.StreamResponse) -> None:
    if isinstance(step, Pause):
        await asyncio.sleep(step.seconds)
    elif isinstance(step, Raw):
        await response.write(step.data)
    elif isinstance(step, Abort):
        assert request.transport is not None
        request.transport.abort()
    elif isinstance(step, dict):
        await response.write(json.dumps(step).encode() + b"\n")


async def _fail(request: web.Request, failure: int | Stalling) -> web.Response:
    if isinstance(failure, Stalling):
        await asyncio.Event().wait()  # until the client gives up (the handler is cancelled)
    assert isinstance(failure, int)
    return _status(Failing(failure))


async def _fail_list(request: web.Request, reply: Failing | Stalling) -> web.StreamResponse:
    if isinstance(reply, Stalling):
        return await _stall(request)
    return _status(reply)


async def _stall(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    await response.write(b'{"items": [')
    await asyncio.Event().wait()
    return response


def _status(failure: Failing) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": f"scripted {failure.status}",
        "reason": failure.reason,
        "code": failure.status,
    }
    return web.json_response(body, status=failure.status)


def client_for(url: str) -> ApiClient:
    return ApiClient(Configuration(host=url))


def free_port() -> int:
    """A port nothing listens on (until someone binds it): connections to it are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def eventually(check: Callable[[], bool], *, within: float = 2.0) -> None:
    """Wait until `check()` holds, polling every couple of milliseconds; fail after `within`."""
    async with asyncio.timeout(within):
        # Polling, not an Event: the checks read state that no one signals (metrics, lists).
        while not check():
            await asyncio.sleep(0.002)


@pytest.fixture
async def apiserver() -> AsyncIterator[FakeApiserver]:
    fake = FakeApiserver()
    runner = await fake.start()
    yield fake
    await runner.cleanup()


@pytest.fixture
async def api(apiserver: FakeApiserver) -> AsyncIterator[ApiClient]:
    async with client_for(apiserver.url) as client:
        yield client
