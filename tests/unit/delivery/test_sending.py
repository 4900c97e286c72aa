"""Sender against real HTTP servers on 127.0.0.1: retries, deadlines, isolation, pooling, TLS."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import AsyncIterator

import pytest

from mtping.delivery import DeliveryPolicy, Outcome, Sender, Target
from mtping.delivery.sending import NO_SLOT, NO_TIME
from mtping.metrics import REGISTRY
from tests.unit.delivery.conftest import FAST, BlackHole, Reply, Sink, TlsFiles

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


async def test_no_backoff_sleep_runs_past_the_deadline(sink: Sink) -> None:
    slow_backoff = DeliveryPolicy(max_attempts=3, backoff_initial=5.0, backoff_max=5.0)
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


async def test_a_slow_sink_times_out_each_attempt(sink: Sink) -> None:
    policy = DeliveryPolicy(
        attempt_timeout=0.1, max_attempts=3, backoff_initial=0.001, backoff_max=0.001
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
    black_hole: BlackHole, other_sink: Sink
) -> None:
    policy = DeliveryPolicy(attempt_timeout=5.0, max_attempts=1, per_origin_limit=4, total_limit=6)
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


async def test_waiting_for_a_slot_stops_at_the_deadline(black_hole: BlackHole) -> None:
    policy = DeliveryPolicy(attempt_timeout=5.0, max_attempts=1, per_origin_limit=1)
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
