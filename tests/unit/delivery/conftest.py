"""Real HTTP servers on 127.0.0.1 for the delivery tests, and a Sender with a fast policy.

`sink`: an aiohttp.web server that records every request and answers from a script.
`black_hole`: a raw asyncio server that accepts, reads, and never answers.
`raw`: a scripted raw HTTP/1.1 server (servers.RawServer); `nginx_server`: Debian's nginx.
`tls_files`: a throwaway CA and a server certificate for 127.0.0.1 signed by it.
`sender`: a Sender with a fast policy, once per HTTP client (`http_client`: lean, aiohttp).
Every test here runs on asyncio's own loop and on uvloop (production's).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import uvloop
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from multidict import CIMultiDictProxy

from mtping.delivery import HTTP_CLIENTS, DeliveryPolicy, Sender
from tests.unit.delivery.servers import Nginx, RawServer, nginx, raw_server

# Backoff of about a millisecond: retries are exercised without slowing the tests down.
FAST = DeliveryPolicy(attempt_timeout=1.0, max_attempts=3, backoff_initial=0.001, backoff_max=0.002)


@dataclass(frozen=True, slots=True)
class Received:
    """One request as the sink saw it; `at` is the server's loop clock on arrival."""

    method: str
    path_qs: str
    headers: CIMultiDictProxy[str]
    raw_headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    peer: tuple[str, int]
    at: float


@dataclass(frozen=True, slots=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Sink:
    """A scripted HTTP sink: replies pop from `script`, then `default` answers everything."""

    url: str = ""
    script: deque[Reply] = field(default_factory=deque)
    default: Reply = field(default_factory=Reply)
    received: list[Received] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        assert request.transport is not None
        self.received.append(
            Received(
                method=request.method,
                path_qs=request.path_qs,
                headers=request.headers,
                raw_headers=request.raw_headers,
                body=body,
                peer=request.transport.get_extra_info("peername"),
                at=asyncio.get_running_loop().time(),
            )
        )
        reply = self.script.popleft() if self.script else self.default
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return web.Response(status=reply.status, headers=reply.headers)


async def _serve(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ssl_context: ssl.SSLContext | None = None,
) -> web.AppRunner:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    # handler_cancellation: a handler sleeping for a timed-out client stops with it, so
    # teardown never waits for it.
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context).start()
    return runner


def _port(runner: web.AppRunner) -> int:
    return int(runner.addresses[0][1])


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    recorder = Sink()
    runner = await _serve(recorder.handle)
    recorder.url = f"http://127.0.0.1:{_port(runner)}/events?x=1"
    yield recorder
    await runner.cleanup()


@pytest.fixture
async def other_sink() -> AsyncIterator[Sink]:
    recorder = Sink()
    runner = await _serve(recorder.handle)
    recorder.url = f"http://127.0.0.1:{_port(runner)}/"
    yield recorder
    await runner.cleanup()


@dataclass
class BlackHole:
    """Accepts connections and reads forever; `connections` counts those accepted so far."""

    url: str = ""
    connections: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.arrived.set()
        try:
            reading = asyncio.ensure_future(self._read_all(reader))
            await self.release.wait()
            reading.cancel()
        finally:
            writer.close()

    @staticmethod
    async def _read_all(reader: asyncio.StreamReader) -> None:
        while await reader.read(65536):
            pass

    async def wait_for_connections(self, count: int, *, within: float = 1.0) -> None:
        async with asyncio.timeout(within):
            while self.connections < count:
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def black_hole() -> AsyncIterator[BlackHole]:
    hole = BlackHole()
    handlers: set[asyncio.Task[None]] = set()

    def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(hole.handle(reader, writer))
        handlers.add(task)

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    hole.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    yield hole
    hole.release.set()
    server.close()
    await asyncio.gather(*handlers, return_exceptions=True)
    await server.wait_closed()


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every delivery test on both loops: the lean client is an asyncio Protocol, and uvloop's
    transports differ from asyncio's in the details it relies on."""
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(params=HTTP_CLIENTS)
def http_client(request: pytest.FixtureRequest) -> str:
    client: str = request.param
    return client


@pytest.fixture
async def sender(http_client: str) -> AsyncIterator[Sender]:
    async with Sender(replace(FAST, http_client=http_client)) as fast_sender:
        yield fast_sender


@pytest.fixture
async def raw() -> AsyncIterator[RawServer]:
    async with raw_server() as server:
        yield server


@pytest.fixture(scope="module")
def nginx_server(tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles) -> Iterator[Nginx]:
    prefix = tmp_path_factory.mktemp("nginx")
    with nginx(prefix, cert=tls_files.cert_path, key=tls_files.key_path) as server:
        yield server


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca_pem: str
    cert_path: Path
    key_path: Path


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mtping test CA")])
    ca_cert = (
        _certificate(subject=ca_name, issuer=ca_name, key=ca_key, now=now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    ip_san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    leaf_cert = (
        _certificate(subject=leaf_name, issuer=ca_name, key=leaf_key, now=now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(ip_san, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(leaf_cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM).decode()
    return TlsFiles(ca_pem=ca_pem, cert_path=cert_path, key_path=key_path)


def _certificate(
    *,
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
    )


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


@pytest.fixture
async def tls_sink(tls_files: TlsFiles) -> AsyncIterator[Sink]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_files.cert_path, tls_files.key_path)
    recorder = Sink()
    runner = await _serve(recorder.handle, ssl_context=context)
    recorder.url = f"https://127.0.0.1:{_port(runner)}/"
    yield recorder
    await runner.cleanup()
