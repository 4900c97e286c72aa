"""HTTP/1.1 on the wire for the lean client: request bytes out, response framing in. Pure.

Requests: `encode_request` turns what is the same on every tick of a source (request line,
Host, User-Agent, the static headers, Content-Length and the body) into two byte strings once;
per event only the varying header lines (`encode_fields`) are spliced between them. The layout
is the one aiohttp writes (request line, Host, User-Agent, headers in the given order,
Content-Length), so both clients put the same bytes on the wire.

Responses: `ResponseParser` is fed whatever a connection receives and says when one response is
complete, following RFC 9112: interim 1xx responses skipped; no body for 204 and 304; otherwise
`Transfer-Encoding` (chunked, with extensions and trailers) before `Content-Length`, and a body
delimited by the connection's close when neither is given. The body is counted and discarded,
never kept. `keep_alive` applies HTTP/1.1 (persistent unless `Connection: close`) and HTTP/1.0
(closed unless `Connection: keep-alive`) semantics.

Never does I/O, never reads a clock; bytes that break the framing raise `WireError`, after
which the connection they came from cannot be trusted.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

# Beyond these the peer is not a sane HTTP server: stop buffering and drop the connection.
MAX_HEAD_BYTES: Final = 64 * 1024
MAX_CHUNK_LINE_BYTES: Final = 4096
# Distinct response heads whose parse is kept (see `read_head`).
_HEAD_CACHE_SIZE: Final = 256
# Header names we send are RFC 9110 tokens; values must not break the line they are on.
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_LINE_BREAKING: Final = re.compile(r"[\r\n\x00]")
# Header names already found to be tokens: the same few names come with every event.
_CHECKED_NAMES: set[str] = set()
_CHECKED_NAMES_LIMIT: Final = 4096
_NO_BODY_STATUSES: Final = frozenset({204, 304})
# Response heads are scanned by regular expressions (C speed), not line loops. Lines end in
# CRLF or a bare LF (RFC 9112 2.2). Only the fields deciding framing, persistence and backoff
# are read, from the lowercased head; a line of another field is not interpreted, so a
# malformed one is ignored, as browsers do. A framing field must be `name:` with no space
# before the colon (RFC 9112 5.1), else it is not recognised and the safe side is taken: the
# body read to the close, the connection not reused. Obsolete line folding is refused.
_BLANK_LINE: Final = re.compile(rb"\n\r?\n")
_LEADING_BLANK_LINES: Final = re.compile(rb"(?:\r?\n)+")
_STATUS_LINE: Final = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?:[ \t][^\r\n]*)?\r?\n")
_FRAMING_FIELD: Final = re.compile(
    rb"\n(content-length|transfer-encoding|connection|retry-after):([^\r\n]*)"
)

# Parser states.
_HEAD, _FIXED, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)


class WireError(ValueError):
    """Bytes that are not HTTP/1.1 (or a header we refuse to send)."""


@dataclass(frozen=True, slots=True)
class RequestBytes:
    """A request with a gap for per-event header lines: `head` + lines + `tail`."""

    head: bytes
    """Request line, Host, User-Agent and the static header lines."""
    tail: bytes
    """Content-Length, the blank line and the body."""

    def with_fields(self, fields: bytes) -> bytes:
        return b"".join((self.head, fields, self.tail))


@dataclass(frozen=True, slots=True)
class Response:
    """What an attempt needs from a response: its status, and whether the connection lives on."""

    status: int
    retry_after: str | None
    keep_alive: bool


def encode_request(
    *,
    path: str,
    host: str,
    user_agent: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
) -> RequestBytes:
    """A POST of `body` to `path` (already percent-encoded) at `host` (host[:port])."""
    if any(_LINE_BREAKING.search(part) for part in (path, host, user_agent)) or " " in path:
        raise WireError("invalid request target or host")
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {user_agent}\r\n"
    tail = b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
    return RequestBytes(head=head.encode() + encode_fields(headers), tail=tail)


def encode_fields(headers: Iterable[tuple[str, str]]) -> bytes:
    """Header lines in UTF-8 (as aiohttp writes them); WireError for a name or value that
    could split the request."""
    lines = []
    for name, value in headers:
        if name not in _CHECKED_NAMES and not _valid_name(name):
            raise WireError("invalid header")
        # isprintable() is true for nearly every value and costs a fraction of the search.
        if not value.isprintable() and _LINE_BREAKING.search(value):
            raise WireError("invalid header")
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode()


def _valid_name(name: str) -> bool:
    if not _TOKEN.fullmatch(name):
        return False
    if len(_CHECKED_NAMES) < _CHECKED_NAMES_LIMIT:
        _CHECKED_NAMES.add(name)
    return True


class ResponseParser:
    """Frames one response at a time out of a byte stream (see the module docstring).

    `feed` returns the Response once its last byte arrived, else None; `feed_eof` ends a body
    delimited by the close. Bytes after a complete response make it not `keep_alive` (we never
    pipeline, so they can only be garbage). `reset` before each request.
    """

    __slots__ = (
        "_buffer",
        "_keep_alive",
        "_remaining",
        "_retry_after",
        "_state",
        "_status",
        "started",
    )

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._state = _HEAD
        self._buffer = bytearray()
        self._remaining = 0
        self._status = 0
        self._retry_after: str | None = None
        self._keep_alive = False
        self.started = False
        """Whether any byte of a response arrived since `reset`."""

    def feed(self, data: bytes) -> Response | None:
        if data:
            self.started = True
        if self._state == _DONE:
            self._keep_alive = False
            return None
        if self._state == _HEAD and not self._buffer and data[:5] == b"HTTP/":
            data = self._head_in_one_piece(data)
        self._buffer += data
        while self._step():
            pass
        if self._state != _DONE:
            return None
        keep_alive = self._keep_alive and not self._buffer
        return Response(self._status, self._retry_after, keep_alive)

    def feed_eof(self) -> Response:
        """The peer closed: the response if the close ends it, else WireError."""
        if self._state == _UNTIL_CLOSE:
            self._state = _DONE
            return Response(self._status, self._retry_after, keep_alive=False)
        raise WireError("connection closed before the response was complete")

    def _step(self) -> bool:
        """Advance one state if the buffer allows; False when more bytes are needed."""
        state = self._state
        if state == _HEAD:
            return self._parse_head()
        if state == _FIXED:
            return self._consume_fixed()
        if state == _CHUNK_SIZE:
            return self._parse_chunk_size()
        if state == _CHUNK_DATA:
            return self._consume_chunk_data()
        if state == _CHUNK_END:
            return self._consume_chunk_end()
        if state == _TRAILERS:
            return self._consume_trailers()
        if state == _UNTIL_CLOSE:
            self._buffer.clear()
        return False

    def _head_in_one_piece(self, data: bytes) -> bytes:
        """The usual case, a whole head in one read, parsed without copying it to the buffer;
        what follows the head, or all of `data` if it is not whole."""
        blank = _BLANK_LINE.search(data)
        if blank is None:
            return data
        self._apply_head(data[: blank.start() + 1])
        return data[blank.end() :]

    def _parse_head(self) -> bool:
        buffer = self._buffer
        if buffer.startswith((b"\r", b"\n")):  # RFC 9112 2.2: ignore blank lines before a response.
            leading = _LEADING_BLANK_LINES.match(buffer)
            del buffer[: leading.end() if leading else 0]
        blank = _BLANK_LINE.search(buffer)
        if blank is None:
            if len(buffer) > MAX_HEAD_BYTES:
                raise WireError("response head too large")
            return False
        head = bytes(buffer[: blank.start() + 1])  # Up to the last field line's LF.
        del buffer[: blank.end()]
        self._apply_head(head)
        return True

    def _apply_head(self, head: bytes) -> None:
        parsed = read_head(head)
        if parsed is None:
            return  # Interim response: the final one follows on the same stream.
        self._status = parsed.status
        self._retry_after = parsed.retry_after
        self._keep_alive = parsed.keep_alive
        self._state = parsed.body_state
        self._remaining = parsed.body_length

    def _consume_fixed(self) -> bool:
        taken = min(self._remaining, len(self._buffer))
        del self._buffer[:taken]
        self._remaining -= taken
        if self._remaining:
            return False
        self._state = _DONE
        return True

    def _parse_chunk_size(self) -> bool:
        line = self._take_line(MAX_CHUNK_LINE_BYTES)
        if line is None:
            return False
        size_text = line.split(b";", 1)[0].strip()
        if not size_text or not all(c in b"0123456789abcdefABCDEF" for c in size_text):
            raise WireError("invalid chunk size")
        self._remaining = int(size_text, 16)
        self._state = _CHUNK_DATA if self._remaining else _TRAILERS
        return True

    def _consume_chunk_data(self) -> bool:
        taken = min(self._remaining, len(self._buffer))
        del self._buffer[:taken]
        self._remaining -= taken
        if self._remaining:
            return False
        self._state = _CHUNK_END
        return True

    def _consume_chunk_end(self) -> bool:
        line = self._take_line(MAX_CHUNK_LINE_BYTES)
        if line is None:
            return False
        if line:
            raise WireError("chunk not followed by CRLF")
        self._state = _CHUNK_SIZE
        return True

    def _consume_trailers(self) -> bool:
        line = self._take_line(MAX_HEAD_BYTES)
        if line is None:
            return False
        if not line:
            self._state = _DONE
        return True

    def _take_line(self, limit: int) -> bytes | None:
        """One line without its terminator (CRLF or a bare LF), or None if incomplete."""
        buffer = self._buffer
        end = buffer.find(b"\n")
        if end < 0:
            if len(buffer) > limit:
                raise WireError("line too long")
            return None
        line = bytes(buffer[:end])
        del buffer[: end + 1]
        return line[:-1] if line.endswith(b"\r") else line


@dataclass(frozen=True, slots=True)
class Head:
    """A response head as far as we read it: status, backoff, persistence and body framing."""

    status: int
    retry_after: str | None
    keep_alive: bool
    body_state: int
    """The parser state the body starts in: done, fixed length, chunked or until the close."""
    body_length: int


@functools.lru_cache(maxsize=_HEAD_CACHE_SIZE)
def read_head(head: bytes) -> Head | None:
    """Parse a head (status line and field lines, each with its line break); None for an
    interim 1xx response. Cached: a server answers a burst with heads that differ, if at all,
    in their Date, so most heads of a burst are parsed once."""
    status_line = _STATUS_LINE.match(head)
    if status_line is None:
        raise WireError("invalid status line")
    status = int(status_line[2])
    if 100 <= status < 200:
        if status == 101:
            raise WireError("unexpected 101 Switching Protocols")
        return None
    # From the status line's LF: each field line is then found after a LF.
    fields = _fields(head, status_line.end() - 1)
    connection = fields.connection
    http11 = status_line[1] == b"1"
    persistent = "close" not in connection if http11 else "keep-alive" in connection
    state, length, framed = _framing(status, fields)
    return Head(status, fields.retry_after, persistent and framed, state, length)


def _framing(status: int, fields: _Fields) -> tuple[int, int, bool]:
    """(body state, body length, whether the body's end is known without the close)."""
    if status in _NO_BODY_STATUSES:
        return _DONE, 0, True
    if fields.transfer_encoding:
        # Both framings at once: a smuggling attempt or a broken peer; never reuse.
        unambiguous = fields.content_length is None
        if fields.transfer_encoding[-1] == "chunked":
            return _CHUNK_SIZE, 0, unambiguous
        return _UNTIL_CLOSE, 0, False
    if fields.content_length is not None:
        length = fields.content_length
        return (_FIXED if length else _DONE), length, True
    return _UNTIL_CLOSE, 0, False


@dataclass(slots=True)
class _Fields:
    """The response headers that decide framing, persistence and backoff."""

    content_length: int | None = None
    transfer_encoding: tuple[str, ...] = ()
    connection: tuple[str, ...] = ()
    retry_after: str | None = None


def _fields(head: bytes, start: int) -> _Fields:
    """The framing fields of `head`, from the LF at `start` on (module docstring)."""
    if b"\n " in head or b"\n\t" in head:
        raise WireError("obsolete header line folding")
    fields = _Fields()
    for match in _FRAMING_FIELD.finditer(head.lower(), start):
        name, value = match[1], match[2].strip(b" \t")
        if name == b"content-length":
            fields.content_length = _content_length(fields.content_length, value)
        elif name == b"transfer-encoding":
            fields.transfer_encoding += _tokens(value)
        elif name == b"connection":
            fields.connection += _tokens(value)
        else:  # Retry-After: an HTTP-date keeps its case, so take it from the original head.
            fields.retry_after = head[slice(*match.span(2))].strip(b" \t").decode("latin-1")
    return fields


def _content_length(seen: int | None, value: bytes) -> int:
    """RFC 9110 8.6: a list of identical values is that value; anything else is an error."""
    if value.isdigit():
        length = int(value)
    else:
        values = {item.strip(b" \t") for item in value.split(b",")}
        if len(values) != 1 or not all(item.isdigit() for item in values):
            raise WireError("invalid Content-Length")
        length = int(values.pop())
    if seen is not None and seen != length:
        raise WireError("conflicting Content-Length")
    return length


def _tokens(lowered_value: bytes) -> tuple[str, ...]:
    text = lowered_value.decode("latin-1")
    if "," not in text:
        return (text,) if text else ()
    return tuple(token.strip(" \t") for token in text.split(",") if token.strip(" \t"))
