"""The general HTTP client: one aiohttp session, for what the lean client does not carry.

`sending.py` uses it for requests the lean client does not cover (URLs with user info, see
`pool.py`) and for every request when `--http-client aiohttp`. It sends the same bytes as the
lean client: the User-Agent, the given headers in order, Content-Length; aiohttp's automatic
Accept, Accept-Encoding and Content-Type are suppressed. Its connector pools keep-alive
connections per origin with no limits of its own (the Sender's semaphores bound concurrency)
and caches DNS answers for `dns_ttl` seconds.

aiohttp types never leave this module: failures leave as DeliveryError subclasses raised
`from` the aiohttp, OS or ssl exception; the caller's timeout (TimeoutError) passes through.
Records no metrics; redirects are not followed.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence

import aiohttp

from mtping.delivery.errors import DeliveryError, InvalidRequest, SinkTLSError, SinkUnreachable
from mtping.delivery.pool import os_reason
from mtping.delivery.preparing import USER_AGENT, Header, Route
from mtping.delivery.wire import Response


class AiohttpClient:
    """One pooled aiohttp session; `exchange` is one attempt."""

    def __init__(self, *, keepalive: float, dns_ttl: float) -> None:
        # limit=0: aiohttp's own limits would queue us invisibly; our semaphores bound it.
        connector = aiohttp.TCPConnector(
            limit=0, limit_per_host=0, ttl_dns_cache=int(dns_ttl), keepalive_timeout=keepalive
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None),  # The Sender times each attempt.
            headers={"User-Agent": USER_AGENT},
            # The event's headers say the content type; never invent one, nor ask for gzip.
            skip_auto_headers=("Content-Type", "Accept", "Accept-Encoding"),
            # Sinks are independent: a cookie one sets must never ride along to another.
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
        )

    async def close(self) -> None:
        await self._session.close()

    async def exchange(
        self,
        route: Route,
        headers: Sequence[Header],
        body: bytes,
        tls: ssl.SSLContext | None,
    ) -> Response:
        """POST once; the response (body read and discarded), or a DeliveryError."""
        try:
            response = await self._session.post(
                route.url,
                headers=headers,
                data=body,
                ssl=tls if tls is not None else True,
                allow_redirects=False,
            )
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            if isinstance(exc, TimeoutError):
                raise
            raise translate(exc) from exc
        async with response:
            await _drain(response)
        retry_after = response.headers.get("Retry-After")
        return Response(response.status, retry_after, keep_alive=True)


async def _drain(response: aiohttp.ClientResponse) -> None:
    """Read and discard the body so the connection can go back to the pool.

    The status has already decided the attempt: a body cut short only costs the connection
    (aiohttp closes it), never a retry that would deliver the event twice.
    """
    try:
        while await response.content.readany():
            pass
    except (aiohttp.ClientError, OSError):
        pass


def translate(exc: Exception) -> DeliveryError:
    """The DeliveryError for an aiohttp, OS or value error raised by one attempt."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return SinkTLSError("TLS certificate verification failed")
    if isinstance(exc, aiohttp.ClientSSLError):
        return SinkTLSError("TLS handshake failed")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return SinkUnreachable("DNS lookup failed")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return SinkUnreachable("server disconnected")
    if isinstance(exc, ValueError):  # aiohttp.InvalidURL, or a header with a line break.
        return InvalidRequest("invalid request")
    return SinkUnreachable(os_reason(exc))
