"""wire.py and preparing.py, pure: request bytes, response framing fed whole and byte by byte."""

from __future__ import annotations

import pytest

from mtping import __version__
from mtping.delivery import InvalidRequest, Target, prepare_request
from mtping.delivery.wire import (
    MAX_HEAD_BYTES,
    Response,
    ResponseParser,
    WireError,
    encode_fields,
    read_head,
)

HEADERS = [("ce-specversion", "1.0"), ("ce-source", "/a%20b"), ("Kn-Namespace", "default")]
BODY = b'{"message": "Hello world!"}'


def test_a_prepared_request_is_the_bytes_aiohttp_would_send() -> None:
    request = prepare_request(
        Target("http://sink.example:8080/p/a%20th?q=1&r=%C3%A4"), HEADERS, BODY
    )

    wire = request.lean_encoding([("ce-id", "id-1"), ("ce-time", "2026-01-01T00:00:00Z")])

    assert wire == (
        b"POST /p/a%20th?q=1&r=%C3%A4 HTTP/1.1\r\n"
        b"Host: sink.example:8080\r\n"
        b"User-Agent: mtping/" + __version__.encode() + b"\r\n"
        b"ce-specversion: 1.0\r\nce-source: /a%20b\r\nKn-Namespace: default\r\n"
        b"ce-id: id-1\r\nce-time: 2026-01-01T00:00:00Z\r\n"
        b"Content-Length: 27\r\n\r\n" + BODY
    )


@pytest.mark.parametrize(
    ("url", "request_line", "host"),
    [
        ("http://sink.example/", b"POST / HTTP/1.1", b"sink.example"),
        ("http://sink.example", b"POST / HTTP/1.1", b"sink.example"),
        ("https://sink.example:443/x", b"POST /x HTTP/1.1", b"sink.example"),
        ("https://sink.example:8443/x#frag", b"POST /x HTTP/1.1", b"sink.example:8443"),
        ("http://[::1]:8080/", b"POST / HTTP/1.1", b"[::1]:8080"),
        ("http://b\u00fccher.example/", b"POST / HTTP/1.1", b"xn--bcher-kva.example"),
    ],
)
def test_request_line_and_host_follow_the_url(url: str, request_line: bytes, host: bytes) -> None:
    wire = prepare_request(Target(url), [], b"").lean_encoding(())

    lines = wire.split(b"\r\n")
    assert (lines[0], lines[1]) == (request_line, b"Host: " + host)
    assert wire.endswith(b"Content-Length: 0\r\n\r\n")


def test_user_info_leaves_the_request_to_aiohttp() -> None:
    request = prepare_request(Target("http://user:secret@sink.example/"), HEADERS, BODY)

    assert (request.error, request.lean_bytes) == (None, None)
    assert request.origin == ("http", "sink.example", 80)


@pytest.mark.parametrize(
    ("url", "headers", "error"),
    [
        ("ftp://sink.example/", [], "sink URL must be an absolute http or https URL"),
        ("http://sink.example/", [("ce-id", "1\r\nX-Injected: yes")], "invalid request"),
        ("http://sink.example/", [("bad name", "1")], "invalid request"),
        ("http://sink.example/", [("", "1")], "invalid request"),
        ("http://user@sink.example/", [("ce-id", "1\nX: y")], "invalid request"),
    ],
)
def test_an_unsendable_request_is_prepared_with_its_error(
    url: str, headers: list[tuple[str, str]], error: str
) -> None:
    request = prepare_request(Target(url), headers, b"")

    assert isinstance(request.error, InvalidRequest)
    assert str(request.error) == error
    assert request.lean_bytes is None


@pytest.mark.parametrize(
    "fields",
    [[("ce-id", "a\rb")], [("ce-id", "a\x00b")], [("ce:id", "a")], [("ce id", "a")]],
)
def test_per_event_fields_that_could_split_the_request_are_refused(
    fields: list[tuple[str, str]],
) -> None:
    with pytest.raises(WireError):
        encode_fields(fields)


def test_field_values_are_utf8_and_may_hold_tabs() -> None:
    assert encode_fields([("ce-x", "a\tb \u00e4")]) == "ce-x: a\tb \u00e4\r\n".encode()


# --- responses -------------------------------------------------------------------------------

CASES = [
    # (response bytes, expected Response)
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", Response(200, None, True)),
    (b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", Response(204, None, True)),
    (b"HTTP/1.1 304 Not Modified\r\n\r\n", Response(304, None, True)),
    (
        b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        Response(202, None, False),
    ),
    (
        b"HTTP/1.1 200 OK\r\nconnection: Keep-Alive, CLOSE\r\ncontent-length: 0\r\n\r\n",
        Response(200, None, False),
    ),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", Response(200, None, False)),
    (
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
        Response(200, None, True),
    ),
    (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\nA\r\n0123456789\r\n0\r\nTrailer: 1\r\nOther: 2\r\n\r\n",
        Response(200, None, True),
    ),
    (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        Response(200, None, True),
    ),
    (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        Response(200, None, False),
    ),
    (
        b"HTTP/1.1 503 Busy\r\nRetry-After: 120\r\nContent-Length: 0\r\n\r\n",
        Response(503, "120", True),
    ),
    (
        b"HTTP/1.1 429 Slow Down\r\nretry-after: Wed, 21 Oct 2015 07:28:00 GMT\r\n"
        b"Content-Length: 0\r\n\r\n",
        Response(429, "Wed, 21 Oct 2015 07:28:00 GMT", True),
    ),
    (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
        Response(201, None, True),
    ),
    (b"\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", Response(200, None, True)),
    (b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", Response(200, None, True)),
    (b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", Response(200, None, True)),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\nX-Empty:\r\n\r\nabc", Response(200, None, True)),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nstray", Response(200, None, False)),
]
IDS = [
    "content-length",
    "204-ignores-length",
    "304",
    "connection-close",
    "close-among-tokens",
    "http10",
    "http10-keep-alive",
    "chunked-with-extension-and-trailers",
    "chunked-last",
    "chunked-and-length",
    "retry-after-seconds",
    "retry-after-date",
    "interim-responses",
    "leading-blank-lines",
    "bare-lf",
    "no-reason-phrase",
    "length-list",
    "stray-bytes",
]


@pytest.mark.parametrize(("data", "expected"), CASES, ids=IDS)
def test_a_response_in_one_piece(data: bytes, expected: Response) -> None:
    parser = ResponseParser()

    assert parser.feed(data) == expected
    assert parser.started


@pytest.mark.parametrize(("data", "expected"), CASES[:-1], ids=IDS[:-1])
def test_a_response_byte_by_byte(data: bytes, expected: Response) -> None:
    parser = ResponseParser()

    results = [parser.feed(data[index : index + 1]) for index in range(len(data))]

    assert results[:-1] == [None] * (len(data) - 1)
    assert results[-1] == expected


def test_a_body_delimited_by_the_close_ends_at_eof() -> None:
    parser = ResponseParser()

    assert parser.feed(b"HTTP/1.1 200 OK\r\n\r\nall of this is body") is None
    assert parser.feed(b"\r\n\r\nstill body") is None
    assert parser.feed_eof() == Response(200, None, False)


@pytest.mark.parametrize(
    "partial",
    [b"", b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab"],
    ids=["nothing", "in-the-head", "in-the-body"],
)
def test_eof_before_the_end_is_an_error(partial: bytes) -> None:
    parser = ResponseParser()
    parser.feed(partial)

    with pytest.raises(WireError):
        parser.feed_eof()
    assert parser.started == bool(partial)


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/2 200\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 OK\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n folded\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n",
    ],
)
def test_bytes_that_break_the_framing_raise(data: bytes) -> None:
    with pytest.raises(WireError):
        ResponseParser().feed(data)


def test_a_head_that_never_ends_is_refused() -> None:
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\n")

    with pytest.raises(WireError, match="too large"):
        parser.feed(b"X-Filler: " + b"x" * MAX_HEAD_BYTES + b"\r\n")


def test_reset_makes_the_parser_ready_for_the_next_response() -> None:
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.1 503 Busy\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n")

    parser.reset()

    assert not parser.started
    assert parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") == Response(200, None, True)


def test_a_repeated_head_is_parsed_once() -> None:
    head = b"HTTP/1.1 202 Accepted\r\nServer: x\r\nContent-Length: 0\r\n"

    assert read_head(head) is read_head(bytes(head))
