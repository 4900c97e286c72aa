"""Real servers for the HTTP client tests, beyond the aiohttp sink of conftest.py.

`RawServer`: an asyncio server that reads each HTTP/1.1 request byte for byte (head, then a
Content-Length body), records it with the number of the connection it came on, and answers
from a script: the bytes to write (in pieces, with pauses), then keep the connection, close it,
or reset it. It covers what well-behaved servers never do on demand: chunked trailers,
HTTP/1.0, a close before answering, a reset, slow heads, garbage.

`Nginx`: Debian's nginx, one worker, run as our own process from a temporary prefix. A missing
nginx fails the test with the command that installs it; it is never a skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import struct
import subprocess
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
INSTALL_NGINX = "hack/install-debs.sh (apt-get install -y nginx-light)"


@dataclass(frozen=True, slots=True)
class Answer:
    """What the server does with one request: write `pieces` (pausing `pause` seconds before
    each but the first), then `after`: "keep" the connection, "close" it, or "reset" it."""

    pieces: tuple[bytes, ...] = (OK,)
    pause: float = 0.0
    after: str = "keep"


CLOSE_UNANSWERED = Answer(pieces=(), after="close")
RESET_UNANSWERED = Answer(pieces=(), after="reset")


@dataclass(frozen=True, slots=True)
class RawRequest:
    connection: int
    data: bytes
    """The whole request as received: head and body."""


@dataclass
class RawServer:
    """A scripted HTTP/1.1 server (see the module docstring)."""

    url: str = ""
    port: int = 0
    script: deque[Answer] = field(default_factory=deque)
    default: Answer = field(default_factory=Answer)
    received: list[RawRequest] = field(default_factory=list)
    connections: int = 0
    closed: int = 0
    """Connections that ended, by either side."""
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            while (request := await _read_request(reader)) is not None:
                self.received.append(RawRequest(number, request))
                answer = self.script.popleft() if self.script else self.default
                if not await _answer(writer, answer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.closed += 1
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    @property
    def bodies(self) -> list[bytes]:
        return [request.data.split(b"\r\n\r\n", 1)[1] for request in self.received]


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


async def _answer(writer: asyncio.StreamWriter, answer: Answer) -> bool:
    """Play `answer`; whether the connection stays open."""
    for index, piece in enumerate(answer.pieces):
        if index and answer.pause:
            await asyncio.sleep(answer.pause)
        writer.write(piece)
        await writer.drain()
    if answer.after == "reset":
        sock = writer.get_extra_info("socket")
        # SO_LINGER with a zero timeout: close() sends a RST instead of a FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
        return False
    return answer.after == "keep"


@contextlib.asynccontextmanager
async def raw_server() -> AsyncIterator[RawServer]:
    server_state = RawServer()

    def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(server_state.handle(reader, writer))
        server_state._handlers.add(task)
        task.add_done_callback(server_state._handlers.discard)

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    server_state.port = server.sockets[0].getsockname()[1]
    server_state.url = f"http://127.0.0.1:{server_state.port}/events"
    try:
        yield server_state
    finally:
        server.close()
        for task in list(server_state._handlers):
            task.cancel()
        await asyncio.gather(*server_state._handlers, return_exceptions=True)
        await server.wait_closed()


NGINX_CONF = """\
worker_processes 1;
daemon off;
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix}/access.log combined;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    # Few requests per connection and a short idle timeout: the client must cope with both.
    keepalive_requests 5;
    keepalive_timeout 1s;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 202; }}
        location /busy {{ add_header Retry-After 1 always; return 503; }}
        location /page {{ return 200 "a page body to be read and discarded\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{tls_port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{ return 202; }}
    }}
}}
"""


@dataclass(frozen=True, slots=True)
class Nginx:
    url: str
    tls_url: str
    access_log: Path

    def requests(self) -> list[str]:
        """The access log's lines so far (nginx writes each line at the end of a request)."""
        return self.access_log.read_text().splitlines() if self.access_log.exists() else []


@contextlib.contextmanager
def nginx(prefix: Path, *, cert: Path, key: Path) -> Iterator[Nginx]:
    binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if binary is None:
        pytest.fail(f"nginx is not installed: run {INSTALL_NGINX}", pytrace=False)
    port, tls_port = _free_port(), _free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(prefix=prefix, port=port, tls_port=tls_port, cert=cert, key=key)
    )
    log = (prefix / "stderr.log").open("wb")
    process = subprocess.Popen([binary, "-c", str(conf), "-p", str(prefix)], stderr=log)
    try:
        _wait_listening(process, port, prefix)
        yield Nginx(
            url=f"http://127.0.0.1:{port}/",
            tls_url=f"https://127.0.0.1:{tls_port}/",
            access_log=prefix / "access.log",
        )
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_listening(process: subprocess.Popen[bytes], port: int, prefix: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            logs = [prefix / "stderr.log", prefix / "error.log"]
            errors = "".join(path.read_text() for path in logs if path.exists())
            pytest.fail(f"nginx exited with {process.returncode}:\n{errors}", pytrace=False)
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    pytest.fail("nginx did not listen within 10 s", pytrace=False)
