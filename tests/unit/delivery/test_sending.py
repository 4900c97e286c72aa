"""Sender against real HTTP servers on 127.0.0.1: retries, deadlines, isolation, pooling, TLS.

Each test runs once per HTTP client (the lean one and aiohttp, `http_client`) on both event
loops: whichever client carries a send, the outcome, the retries and the metrics are the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import pytest

from mtping import __version__
from mtping.delivery import (
    HTTP_CLIENTS,
    DeliveryPolicy,
    Outcome,
    Sender,
    Target,
    prepare_request,
)
from mtping.delivery.sending import NO_SLOT, NO_TIME
from mtping.metrics import REGISTRY
from tests.unit.delivery.conftest import FAST, BlackHole, Reply, Sink, TlsFiles
from tests.unit.delivery.servers import CLOSE_UNANSWERED, Answer, Nginx, RawServer

CE_HEADERS = [
    ("ce-specversion", "1.0"),
    ("ce-id", "5b9d1a3e-8c1f-4c53-9f0e-2f6f5b2d8a11"),
    ("ce-source", "/apis/v1/namespaces/default/pingsources/ping"),
    ("ce-type", "dev.knative.sources.ping"),
    ("ce-time", "2026-01-01T00:00:00Z"),
    ("ce-myextension", "a value, with commas; and = signs"),
    ("Content-Type", "application/json"),
]
BODY = b'{"message": "Hello world!"}'
# The same event as the dispatcher sends it: static headers prepared once, then per tick.
STATIC_HEADERS = [(name, value) for name, value in CE_HEADERS if name not in ("ce-id", "ce-time")]
TICK_FIELDS = [
    ("ce-id", "5b9d1a3e-8c1f-4c53-9f0e-2f6f5b2d8a11"),
    ("ce-time", "2026-01-01T00:00:00Z"),
]


def now() -> float:
    return asyncio.get_running_loop().time()


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


class MaxRng(random.Random):
    """Jitter that always picks the top of the range: the longest backoff the policy allows."""

    def uniform(self, a: float, b: float) -> float:
        return b


@contextlib.asynccontextmanager
async def stuck_sends(sender: Sender, url: str, *, count: int) -> AsyncIterator[None]:
    """`count` sends to `url` running in the background, cancelled on exit."""
    tasks = [asyncio.create_task(send(sender, url, within=5)) for _ in range(count)]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def send(sender: Sender, url: str, *, within: float = 1.5, **target: str) -> Outcome:
    return await sender.send(Target(url, **target), CE_HEADERS, BODY, give_up_at=now() + within)


@pytest.mark.parametrize("status", [200, 202, 204])
async def test_2xx_delivers_the_exact_headers_and_body(
    sender: Sender, sink: Sink, status: int
) -> None:
    sink.default = Reply(status)

    outcome = await send(sender, sink.url)

    assert outcome == Outcome(delivered=True, status=status, attempts=1, error=None)
    [request] = sink.received
    assert (request.method, request.path_qs, request.body) == ("POST", "/events?x=1", BODY)
    for name, value in CE_HEADERS:
        assert request.headers.getall(name) == [value]
    assert request.headers["User-Agent"].startswith("mtping/")


async def test_no_content_type_is_invented(sender: Sender, sink: Sink) -> None:
    headers = [(name, value) for name, value in CE_HEADERS if name != "Content-Type"]

    outcome = await sender.send(Target(sink.url), headers, b"\x00\x01", give_up_at=now() + 1)

    assert outcome.delivered
    assert "Content-Type" not in sink.received[0].headers
    assert sink.received[0].body == b"\x00\x01"


async def test_a_retry_resends_the_identical_request(sender: Sender, sink: Sink) -> None:
    sink.script.append(Reply(503))
    before = {
        "5xx": sample("mtping_delivery_attempts_total", {"outcome": "5xx"}),
        "2xx": sample("mtping_delivery_attempts_total", {"outcome": "2xx"}),
        "retries": sample("mtping_delivery_retries_total"),
        "latency": sample("mtping_sink_latency_seconds_count"),
        "in_flight": sample("mtping_sends_in_flight"),
    }

    outcome = await send(sender, sink.url)

    assert outcome == Outcome(delivered=True, status=200, attempts=2, error=None)
    first, second = sink.received
    assert first.raw_headers == second.raw_headers
    assert first.body == second.body == BODY
    after = {
        "5xx": sample("mtping_delivery_attempts_total", {"outcome": "5xx"}),
        "2xx": sample("mtping_delivery_attempts_total", {"outcome": "2xx"}),
        "retries": sample("mtping_delivery_retries_total"),
        "latency": sample("mtping_sink_latency_seconds_count"),
        "in_flight": sample("mtping_sends_in_flight"),
    }
    assert {key: after[key] - before[key] for key in before} == {
        "5xx": 1,
        "2xx": 1,
        "retries": 1,
        "latency": 2,
        "in_flight": 0,
    }


@pytest.mark.parametrize(
    ("status", "retried"),
    [
        (404, True),
        (408, True),
        (425, True),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (400, False),
        (401, False),
        (403, False),
        (409, False),
        (413, False),
        (501, False),
        (307, False),  # not followed either: exactly one request reaches the sink
    ],
)
async def test_which_statuses_are_retried(
    sender: Sender, sink: Sink, status: int, retried: bool
) -> None:
    sink.default = Reply(status, headers={"Location": "/elsewhere"})

    outcome = await send(sender, sink.url)

    expected_attempts = FAST.max_attempts if retried else 1
    assert (outcome.delivered, outcome.status, outcome.attempts) == (
        False,
        status,
        expected_attempts,
    )
    assert outcome.error is not None
    assert outcome.error.startswith(str(status))
    assert len(sink.received) == expected_attempts
    assert all(request.path_qs == "/events?x=1" for request in sink.received)


async def test_retry_after_seconds_is_honoured(sender: Sender, sink: Sink) -> None:
    sink.script.append(Reply(429, headers={"Retry-After": "1"}))

    outcome = await send(sender, sink.url, within=1.8)

    assert outcome == Outcome(delivered=True, status=200, attempts=2, error=None)
    gap = sink.received[1].at - sink.received[0].at
    assert 0.99 <= gap < 1.3


async def test_retry_after_beyond_the_deadline_gives_up_at_once(sender: Sender, sink: Sink) -> None:
    sink.default = Reply(503, headers={"Retry-After": "1"})
    started = now()

    outcome = await send(sender, sink.url, within=0.5)

    assert outcome == Outcome(
        delivered=False, status=503, attempts=1, error="503 Service Unavailable"
    )
    assert now() - started < 0.2


async def test_no_backoff_sleep_runs_past_the_deadline(sink: Sink, http_client: str) -> None:
    slow_backoff = DeliveryPolicy(
        max_attempts=3, backoff_initial=5.0, backoff_max=5.0, http_client=http_client
    )
    sink.default = Reply(500)
    started = now()

    async with Sender(slow_backoff, rng=MaxRng()) as sender:
        outcome = await send(sender, sink.url, within=0.5)

    assert (outcome.attempts, outcome.error) == (1, "500 Internal Server Error")
    assert now() - started < 0.2


async def test_connection_refused_is_retried_then_given_up(sender: Sender) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    before = sample("mtping_delivery_attempts_total", {"outcome": "connection"})

    outcome = await send(sender, f"http://127.0.0.1:{closed_port}/")

    assert outcome == Outcome(
        delivered=False, status=None, attempts=FAST.max_attempts, error="connection refused"
    )
    after = sample("mtping_delivery_attempts_total", {"outcome": "connection"})
    assert after - before == FAST.max_attempts


async def test_a_slow_sink_times_out_each_attempt(sink: Sink, http_client: str) -> None:
    policy = DeliveryPolicy(
        attempt_timeout=0.1,
        max_attempts=3,
        backoff_initial=0.001,
        backoff_max=0.001,
        http_client=http_client,
    )
    sink.default = Reply(200, delay=2.0)
    started = now()

    async with Sender(policy) as sender:
        outcome = await send(sender, sink.url)

    assert outcome == Outcome(delivered=False, status=None, attempts=3, error="timeout after 0.1s")
    assert 0.3 <= now() - started < 0.6
    assert len(sink.received) == 3


async def test_a_deadline_already_past_makes_no_attempt(sender: Sender, sink: Sink) -> None:
    outcome = await sender.send(Target(sink.url), CE_HEADERS, BODY, give_up_at=now() - 1)

    assert outcome == Outcome(delivered=False, status=None, attempts=0, error=NO_TIME)
    assert sink.received == []


async def test_a_black_holed_origin_does_not_starve_other_origins(
    black_hole: BlackHole, other_sink: Sink, http_client: str
) -> None:
    policy = DeliveryPolicy(
        attempt_timeout=5.0,
        max_attempts=1,
        per_origin_limit=4,
        total_limit=6,
        http_client=http_client,
    )
    in_flight_before = sample("mtping_sends_in_flight")
    async with Sender(policy) as sender:
        async with stuck_sends(sender, black_hole.url, count=20):
            await black_hole.wait_for_connections(policy.per_origin_limit)
            started = now()

            outcomes = await asyncio.gather(*(send(sender, other_sink.url) for _ in range(10)))

            assert now() - started < 0.5
            assert all(outcome.delivered for outcome in outcomes)
            assert black_hole.connections == policy.per_origin_limit
            assert sender.tracked_origins == 1  # the black hole's; the good one's was dropped
        assert sender.tracked_origins == 0  # cancelled sends gave their slots back
    assert sample("mtping_sends_in_flight") == in_flight_before


async def test_waiting_for_a_slot_stops_at_the_deadline(
    black_hole: BlackHole, http_client: str
) -> None:
    policy = DeliveryPolicy(
        attempt_timeout=5.0, max_attempts=1, per_origin_limit=1, http_client=http_client
    )
    async with Sender(policy) as sender, stuck_sends(sender, black_hole.url, count=1):
        await black_hole.wait_for_connections(1)
        started = now()

        outcome = await send(sender, black_hole.url, within=0.2)

        assert outcome == Outcome(delivered=False, status=None, attempts=0, error=NO_SLOT)
        assert 0.15 <= now() - started < 0.4


async def test_sequential_sends_reuse_a_kept_alive_connection(sender: Sender, sink: Sink) -> None:
    outcomes = [await send(sender, sink.url) for _ in range(50)]

    assert all(outcome.delivered for outcome in outcomes)
    assert len({request.peer for request in sink.received}) <= 2
    assert sender.tracked_origins == 0


async def test_https_verifies_against_the_given_ca(
    sender: Sender, tls_sink: Sink, tls_files: TlsFiles
) -> None:
    outcome = await send(sender, tls_sink.url, ca_certs=tls_files.ca_pem)

    assert outcome == Outcome(delivered=True, status=200, attempts=1, error=None)
    assert tls_sink.received[0].body == BODY


async def test_an_unverifiable_certificate_is_not_retried(sender: Sender, tls_sink: Sink) -> None:
    outcome = await send(sender, tls_sink.url)

    assert outcome == Outcome(
        delivered=False, status=None, attempts=1, error="TLS certificate verification failed"
    )
    assert tls_sink.received == []


async def test_invalid_ca_certs_make_no_attempt(sender: Sender, tls_sink: Sink) -> None:
    outcome = await send(sender, tls_sink.url, ca_certs="not a PEM")

    assert outcome == Outcome(
        delivered=False, status=None, attempts=0, error="invalid CA certificates"
    )


@pytest.mark.parametrize("url", ["ftp://example.com/", "/relative", "http:///no-host", ""])
async def test_an_invalid_sink_url_makes_no_attempt(sender: Sender, url: str) -> None:
    outcome = await send(sender, url)

    assert outcome == Outcome(
        delivered=False,
        status=None,
        attempts=0,
        error="sink URL must be an absolute http or https URL",
    )


async def test_a_header_with_a_line_break_is_not_sent(sender: Sender, sink: Sink) -> None:
    headers = [("ce-id", "1\r\nX-Injected: yes")]

    outcome = await sender.send(Target(sink.url), headers, BODY, give_up_at=now() + 1)

    assert (outcome.delivered, outcome.attempts, outcome.error) == (False, 0, "invalid request")
    assert sink.received == []


# --- both clients, byte for byte --------------------------------------------------------------


async def test_both_clients_put_the_same_bytes_on_the_wire(raw: RawServer) -> None:
    request = prepare_request(Target(raw.url), STATIC_HEADERS, BODY)
    for client in HTTP_CLIENTS:
        async with Sender(replace(FAST, http_client=client)) as sender:
            outcome = await sender.send_prepared(request, TICK_FIELDS, give_up_at=now() + 1)
            assert outcome.delivered, client

    lean, by_aiohttp = (received.data for received in raw.received)
    expected = (
        f"POST /events HTTP/1.1\r\nHost: 127.0.0.1:{raw.port}\r\n"
        f"User-Agent: mtping/{__version__}\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in [*STATIC_HEADERS, *TICK_FIELDS])
        + f"Content-Length: {len(BODY)}\r\n\r\n"
    ).encode() + BODY
    assert lean == by_aiohttp == expected


async def test_send_and_send_prepared_send_the_same_request(sender: Sender, raw: RawServer) -> None:
    prepared = prepare_request(Target(raw.url), STATIC_HEADERS, BODY)

    await sender.send(Target(raw.url), [*STATIC_HEADERS, *TICK_FIELDS], BODY, give_up_at=now() + 1)
    await sender.send_prepared(prepared, TICK_FIELDS, give_up_at=now() + 1)

    assert raw.received[0].data == raw.received[1].data


async def test_a_url_with_user_info_goes_through_aiohttp(sender: Sender, raw: RawServer) -> None:
    url = raw.url.replace("http://", "http://user:secret@")

    outcome = await send(sender, url)

    assert outcome == Outcome(delivered=True, status=200, attempts=1, error=None)
    assert b"\r\nAuthorization: Basic dXNlcjpzZWNyZXQ=\r\n" in raw.received[0].data
    assert sender.lean_connections == 0


async def test_the_lean_client_pools_its_connections(raw: RawServer) -> None:
    async with Sender(FAST) as sender:
        outcomes = await asyncio.gather(*(send(sender, raw.url) for _ in range(20)))
        assert all(outcome.delivered for outcome in outcomes)
        assert sender.lean_connections == raw.connections <= FAST.per_origin_limit

        await send(sender, raw.url)

        assert raw.connections == sender.lean_connections
    assert sender.lean_connections == 0


async def test_a_replayed_request_counts_as_one_attempt(raw: RawServer) -> None:
    raw.script.extend([Answer(), CLOSE_UNANSWERED])
    async with Sender(FAST) as sender:
        await send(sender, raw.url)
        before = sample("mtping_delivery_attempts_total", {"outcome": "2xx"})

        outcome = await send(sender, raw.url)

    assert outcome == Outcome(delivered=True, status=200, attempts=1, error=None)
    assert sample("mtping_delivery_attempts_total", {"outcome": "2xx"}) - before == 1
    assert len(raw.received) == 3  # The keep-alive race's price: the sink saw it twice.


# --- nginx --------------------------------------------------------------------------------------


async def test_nginx_closing_connections_costs_no_attempt(
    sender: Sender, nginx_server: Nginx
) -> None:
    """nginx closes each connection after 5 requests, and idle ones after 1 s."""
    before = len(nginx_server.requests())

    outcomes = [await send(sender, nginx_server.url) for _ in range(12)]
    await asyncio.sleep(1.3)
    outcomes += await asyncio.gather(*(send(sender, nginx_server.url) for _ in range(12)))

    assert {outcome.attempts for outcome in outcomes} == {1}
    assert {outcome.status for outcome in outcomes} == {202}
    await wait_until(lambda: len(nginx_server.requests()) - before == 24)


async def test_nginx_bodies_are_read_and_connections_kept(
    sender: Sender, nginx_server: Nginx
) -> None:
    outcomes = [await send(sender, nginx_server.url + "page") for _ in range(3)]

    assert {(outcome.status, outcome.attempts) for outcome in outcomes} == {(200, 1)}


async def test_nginx_retry_after_beyond_the_deadline_stops_at_once(
    sender: Sender, nginx_server: Nginx
) -> None:
    started = now()

    outcome = await send(sender, nginx_server.url + "busy", within=0.5)

    assert outcome == Outcome(
        delivered=False, status=503, attempts=1, error="503 Service Unavailable"
    )
    assert now() - started < 0.3


async def test_nginx_over_tls(sender: Sender, nginx_server: Nginx, tls_files: TlsFiles) -> None:
    trusted = await send(sender, nginx_server.tls_url, ca_certs=tls_files.ca_pem)
    untrusted = await send(sender, nginx_server.tls_url)

    assert trusted == Outcome(delivered=True, status=202, attempts=1, error=None)
    assert untrusted == Outcome(
        delivered=False, status=None, attempts=1, error="TLS certificate verification failed"
    )


async def wait_until(condition: Callable[[], bool], *, within: float = 2.0) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.02)
