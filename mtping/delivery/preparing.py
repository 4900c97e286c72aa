"""Preparing a request: what every event of one (sink, headers, body) shares, computed once.

A `PreparedRequest` holds the parsed sink URL, its origin, the static headers and body, and, when
the lean client can carry it, the request already encoded to bytes with a gap for the few
headers that change per event (`wire.RequestBytes`). The registry builds one per source change
(`sources.Firing`), so a tick costs no URL parsing and no header encoding. A request that
cannot be sent (bad URL, a header that would split the request) is prepared all the same, with
its `error` set: the sender reports it as an undelivered outcome, never raises it.

Headers are validated here whichever client sends them, so a bad header fails the same way
(no attempt, "invalid request") on both. Pure: no I/O, no clock; it only says which client can
carry a request (`lean_bytes` is None when only aiohttp can, see `pool.py`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

from yarl import URL

from mtping import __version__
from mtping.delivery.errors import InvalidRequest
from mtping.delivery.wire import RequestBytes, WireError, encode_fields, encode_request

USER_AGENT: Final = f"mtping/{__version__}"
# Parsed sink URLs kept; a cluster has one per distinct sink, far fewer than this.
_ROUTE_CACHE_SIZE: Final = 8192

Origin: TypeAlias = tuple[str, str, int]  # (scheme, host, port)
Header: TypeAlias = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Target:
    """Where to POST: `url`, an optional PEM bundle `ca_certs` trusted in addition to the system
    CAs (like Knative's sink.CACerts), and `audience`, kept for OIDC, which is not done yet."""

    url: str
    ca_certs: str | None = None
    audience: str | None = None


@dataclass(frozen=True, slots=True)
class Route:
    """A parsed sink URL; `origin` keys the per-origin queues, slots and connection pools."""

    url: URL
    origin: Origin


@dataclass(frozen=True, slots=True, eq=False)
class PreparedRequest:
    """One sink's request minus the per-event headers (see the module docstring)."""

    target: Target
    headers: tuple[Header, ...]
    body: bytes
    route: Route | None
    """None when the URL is unusable; `error` says why."""
    lean_bytes: RequestBytes | None
    """The encoded request for the lean client; None when it cannot carry this request."""
    error: InvalidRequest | None

    @property
    def origin(self) -> Origin:
        return self.route.origin if self.route else ("invalid", self.target.url, 0)

    def lean_encoding(self, fields: Sequence[Header]) -> bytes:
        """The full request for the lean client, with `fields` in the gap (WireError if bad)."""
        if self.lean_bytes is None:
            raise WireError("not a lean request")
        return self.lean_bytes.with_fields(encode_fields(fields))


def prepare_request(target: Target, headers: Sequence[Header], body: bytes) -> PreparedRequest:
    """Parse the URL and validate and encode the headers, once."""
    static = tuple(headers)
    try:
        route = parse_route(target.url)
        encoded = _lean_bytes(route, static, body)
    except InvalidRequest as error:
        return PreparedRequest(target, static, body, None, None, error)
    return PreparedRequest(target, static, body, route, encoded, None)


@functools.lru_cache(maxsize=_ROUTE_CACHE_SIZE)
def parse_route(url: str) -> Route:
    """Parse a sink URL; InvalidRequest unless it is an absolute http or https URL."""
    try:
        parsed = URL(url)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest("invalid sink URL") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host or parsed.port is None:
        raise InvalidRequest("sink URL must be an absolute http or https URL")
    return Route(url=parsed, origin=(parsed.scheme, parsed.host, parsed.port))


def _lean_bytes(route: Route, headers: tuple[Header, ...], body: bytes) -> RequestBytes | None:
    url = route.url
    try:
        encoded = encode_request(
            path=url.raw_path_qs,
            host=url.host_port_subcomponent or "",
            user_agent=USER_AGENT,
            headers=headers,
            body=body,
        )
    except WireError as exc:
        raise InvalidRequest("invalid request") from exc
    if url.raw_user is not None or url.raw_password is not None:
        return None  # Basic credentials in the URL: aiohttp turns them into Authorization.
    return encoded
