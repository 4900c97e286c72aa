"""The lean client (LeanClient) against real servers: framing, keep-alive, the replay rule.

Most tests script a raw server (servers.RawServer) to answer exactly as a test needs; one
uses aiohttp's server for a chunked response. Both event loops run every test (conftest).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from mtping.delivery import SinkUnreachable, Target, prepare_request
from mtping.delivery.pool import LeanClient
from mtping.delivery.preparing import parse_route
from mtping.delivery.wire import Response
from tests.unit.delivery.servers import (
    CLOSE_UNANSWERED,
    OK,
    RESET_UNANSWERED,
    Answer,
    RawServer,
)

BODY = b'{"n": 1}'


@pytest.fixture
async def client() -> AsyncIterator[LeanClient]:
    lean = LeanClient(keepalive=15.0, dns_ttl=30.0)
    lean.start()
    yield lean
    await lean.close()


async def post(client: LeanClient, url: str, *, within: float = 1.0) -> Response:
    request = prepare_request(Target(url), [("ce-id", "1")], BODY)
    assert request.route is not None
    return await client.exchange(request.route, request.lean_encoding(()), None, within=within)


async def wait_for(condition: Callable[[], bool], *, within: float = 1.0) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.01)


async def test_one_connection_carries_request_after_request(
    client: LeanClient, raw: RawServer
) -> None:
    statuses = [(await post(client, raw.url)).status for _ in range(3)]

    assert statuses == [200, 200, 200]
    assert raw.connections == 1
    assert raw.bodies == [BODY] * 3
    assert client.open_connections == 1


@pytest.mark.parametrize(
    ("answer", "status", "reused"),
    [
        (Answer((b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",)), 200, True),
        (Answer((b"HTTP/1.1 201 Created\r\ncontent-length: 5, 5\r\n\r\nhello",)), 201, True),
        (
            Answer(
                (
                    b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n",
                    b"5;ext=1\r\nhello\r\n6\r\n world\r\n",
                    b"0\r\nX-Trailer: yes\r\n\r\n",
                ),
                pause=0.02,
            ),
            202,
            True,
        ),
        (
            Answer((b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",)),
            200,
            False,
        ),
        (Answer((b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",)), 200, False),
        (
            Answer((b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",)),
            200,
            True,
        ),
        (Answer((b"HTTP/1.1 200 OK\r\n\r\nuntil the close",), after="close"), 200, False),
        (Answer((b"HTTP/1.1 204 No Content\r\n\r\n",)), 204, True),
        (
            Answer(
                (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",)
            ),
            201,
            True,
        ),
        (Answer((b"HTTP/1.1 100 Continue\r\n\r\n", OK), pause=0.02), 200, True),
        (Answer((b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",)), 200, True),
        (
            Answer((b"HTTP/1.1 200 O", b"K\r\nContent-Len", b"gth: 2\r\n\r", b"\nok"), pause=0.02),
            200,
            True,
        ),
    ],
    ids=[
        "content-length",
        "content-length-list",
        "chunked-with-trailer",
        "connection-close",
        "http10",
        "http10-keep-alive",
        "until-close",
        "204",
        "interim-in-one-piece",
        "interim-then-final",
        "bare-lf",
        "slow-head",
    ],
)
async def test_response_framing_decides_the_connections_reuse(
    client: LeanClient, raw: RawServer, answer: Answer, status: int, reused: bool
) -> None:
    raw.script.append(answer)

    first = await post(client, raw.url)
    second = await post(client, raw.url)

    assert (first.status, second.status) == (status, 200)
    assert raw.connections == (1 if reused else 2)
    assert len(raw.received) == 2


async def test_retry_after_is_read_from_the_response(client: LeanClient, raw: RawServer) -> None:
    raw.script.append(
        Answer((b"HTTP/1.1 429 Too Many\r\nRETRY-AFTER:  7 \r\nContent-Length: 0\r\n\r\n",))
    )

    response = await post(client, raw.url)

    assert (response.status, response.retry_after) == (429, "7")


async def test_a_chunked_aiohttp_response_is_consumed_and_its_connection_reused(
    client: LeanClient,
) -> None:
    peers: list[object] = []

    async def chunked(request: web.Request) -> web.StreamResponse:
        await request.read()
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        response = web.StreamResponse(status=202)
        response.enable_chunked_encoding()
        await response.prepare(request)
        for piece in (b"accepted", b" and", b" logged" * 500):
            await response.write(piece)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/", chunked)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
        statuses = [(await post(client, url)).status for _ in range(3)]
    finally:
        await client.close()
        await runner.cleanup()
    assert statuses == [202, 202, 202]
    assert len(set(map(str, peers))) == 1


async def test_a_response_slower_than_the_timeout_fails_and_closes_its_connection(
    client: LeanClient, raw: RawServer
) -> None:
    raw.script.append(Answer((b"HTTP/1.1 200 OK\r\n", b"Content-Length: 0\r\n\r\n"), pause=0.5))

    with pytest.raises(TimeoutError):
        await post(client, raw.url, within=0.1)

    await wait_for(lambda: raw.closed == 1)
    assert client.open_connections == 0


async def test_a_connection_closed_while_idle_is_not_reused(
    client: LeanClient, raw: RawServer
) -> None:
    raw.script.append(Answer(after="close"))  # Answers, then closes: an idle timeout of 0.
    await post(client, raw.url)
    await wait_for(lambda: raw.closed == 1)

    response = await post(client, raw.url)

    assert response.status == 200
    assert (raw.connections, len(raw.received)) == (2, 2)  # No duplicate was needed.


async def test_the_keep_alive_race_is_replayed_once_on_a_new_connection(
    client: LeanClient, raw: RawServer
) -> None:
    # The server closes the reused connection as the second request arrives, unanswered.
    raw.script.extend([Answer(), CLOSE_UNANSWERED])
    await post(client, raw.url)

    response = await post(client, raw.url)

    assert response.status == 200
    assert [request.connection for request in raw.received] == [1, 1, 2]
    assert raw.received[1].data == raw.received[2].data  # The replay is the same request.


async def test_a_reset_of_a_reused_connection_is_replayed_too(
    client: LeanClient, raw: RawServer
) -> None:
    raw.script.extend([Answer(), RESET_UNANSWERED])
    await post(client, raw.url)

    response = await post(client, raw.url)

    assert response.status == 200
    assert [request.connection for request in raw.received] == [1, 1, 2]


async def test_a_new_connection_closed_unanswered_is_not_replayed(
    client: LeanClient, raw: RawServer
) -> None:
    raw.script.append(CLOSE_UNANSWERED)

    with pytest.raises(SinkUnreachable, match=r"^server disconnected$"):
        await post(client, raw.url)

    assert len(raw.received) == 1


@pytest.mark.parametrize(
    "reused", [False, True], ids=["on-a-new-connection", "on-a-reused-connection"]
)
async def test_a_response_cut_short_is_never_replayed(
    client: LeanClient, raw: RawServer, reused: bool
) -> None:
    if reused:
        raw.script.append(Answer())
        await post(client, raw.url)
    raw.script.append(Answer((b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",), after="close"))

    with pytest.raises(SinkUnreachable, match=r"^server disconnected$") as failure:
        await post(client, raw.url)

    assert len(raw.received) == (2 if reused else 1)
    assert failure.value.__cause__ is not None


async def test_a_reset_of_a_new_connection_fails_the_attempt(
    client: LeanClient, raw: RawServer
) -> None:
    raw.script.append(RESET_UNANSWERED)

    with pytest.raises(SinkUnreachable, match=r"^connection reset by peer$") as failure:
        await post(client, raw.url)

    assert isinstance(failure.value.__cause__, ConnectionResetError)


@pytest.mark.parametrize(
    "garbage",
    [
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    ],
)
async def test_an_invalid_response_fails_the_attempt_and_the_connection(
    client: LeanClient, raw: RawServer, garbage: bytes
) -> None:
    raw.script.append(Answer((garbage,)))

    with pytest.raises(SinkUnreachable, match=r"^invalid HTTP response$"):
        await post(client, raw.url)

    await wait_for(lambda: raw.closed == 1)
    assert client.open_connections == 0


@pytest.mark.parametrize(
    "answer",
    [Answer((OK + b"stray",)), Answer((OK, b"late stray bytes"), pause=0.02)],
    ids=["with-the-response", "while-idle"],
)
async def test_bytes_nobody_asked_for_retire_the_connection(
    client: LeanClient, raw: RawServer, answer: Answer
) -> None:
    raw.script.append(answer)
    assert (await post(client, raw.url)).status == 200
    await asyncio.sleep(0.1)

    assert (await post(client, raw.url)).status == 200

    assert raw.connections == 2


async def test_idle_connections_expire_after_the_keepalive(raw: RawServer) -> None:
    lean = LeanClient(keepalive=0.15, dns_ttl=30.0)
    lean.start()
    try:
        await post(lean, raw.url)
        await wait_for(lambda: raw.closed == 1)
        assert lean.open_connections == 0
    finally:
        await lean.close()


async def test_close_closes_every_connection(raw: RawServer) -> None:
    lean = LeanClient(keepalive=15.0, dns_ttl=30.0)
    lean.start()
    await asyncio.gather(*(post(lean, raw.url) for _ in range(3)))

    await lean.close()

    await wait_for(lambda: raw.closed == raw.connections == 3)
    assert lean.open_connections == 0


async def test_a_name_is_resolved_and_its_addresses_tried_in_order(
    client: LeanClient, raw: RawServer
) -> None:
    # localhost may resolve to ::1 first, where nothing listens: the next address is tried.
    url = f"http://localhost:{raw.port}/events"

    statuses = [(await post(client, url)).status for _ in range(2)]

    assert statuses == [200, 200]
    assert raw.connections == 1


async def test_an_unknown_name_fails_as_a_dns_failure(client: LeanClient) -> None:
    with pytest.raises(SinkUnreachable, match=r"^DNS lookup failed$") as failure:
        await post(client, "http://no-such-sink.invalid/", within=5.0)

    assert isinstance(failure.value.__cause__, socket.gaierror)


async def test_a_refused_connection_says_so(client: LeanClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]

    with pytest.raises(SinkUnreachable, match=r"^connection refused$") as failure:
        await post(client, f"http://127.0.0.1:{closed_port}/")

    assert isinstance(failure.value.__cause__, ConnectionRefusedError)


def test_parse_route_keeps_the_origin_of_each_url() -> None:
    assert parse_route("https://sink.example/a").origin == ("https", "sink.example", 443)
    assert parse_route("http://[::1]:8080/").origin == ("http", "::1", 8080)
