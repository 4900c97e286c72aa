"""The sinks: one nginx (Debian's binary) with a `server` per sink, logging every arrival.

nginx answers 202 and appends one access-log line per request (arrival time, ce-id, ce-time,
ce-source, user agent), buffered, so measuring costs the adapters nothing and a Python sink's
own slowness never shows up as adapter lateness. It must never listen beyond loopback and
never leave nginx running (tests.harness.process reaps it).
"""

from __future__ import annotations

import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from tests.harness.process import ManagedProcess, free_port

# Fields are space separated; the user agent comes last (it is the only one that could hold
# a space). A missing header is logged as "-".
LOG_FORMAT = "$msec $http_ce_id $http_ce_time $http_ce_source $status $http_user_agent"
NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/bin/nginx")


class SinkError(RuntimeError):
    """nginx is missing or did not start."""


@dataclass(frozen=True, slots=True)
class Sinks:
    process: ManagedProcess
    urls: tuple[str, ...]
    access_log: Path

    def stop(self) -> None:
        self.process.stop(grace_seconds=5.0)

    def log_size(self) -> int:
        return self.access_log.stat().st_size if self.access_log.exists() else 0


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (path for path in NGINX_CANDIDATES if Path(path).exists()), None
    )
    if found is None:
        raise SinkError("nginx is not installed: run hack/install-debs.sh")
    return found


def start_sinks(work_dir: Path, *, count: int, workers: int = 2) -> Sinks:
    """Start nginx with `count` servers on free loopback ports; wait until all listen."""
    ports = [free_port() for _ in range(count)]
    root = work_dir / "nginx"
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    config = root / "nginx.conf"
    config.write_text(nginx_config(root, ports, workers=workers))
    argv = [nginx_binary(), "-p", str(root), "-c", str(config), "-e", str(root / "error.log")]
    process = ManagedProcess(argv, log_path=root / "stdout.log")
    sinks = Sinks(
        process=process,
        urls=tuple(f"http://127.0.0.1:{port}/" for port in ports),
        access_log=root / "access.log",
    )
    _await_listening(sinks, ports)
    return sinks


def nginx_config(root: Path, ports: list[int], *, workers: int) -> str:
    """A foreground nginx: `return 202` on every port, one buffered access log for all."""
    servers = "\n".join(_server_block(port) for port in ports)
    temp = root / "tmp"
    return f"""
daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile 200000;
pid {root / "nginx.pid"};
error_log {root / "error.log"} warn;
events {{
    worker_connections 100000;
    multi_accept on;
}}
http {{
    log_format ce '{LOG_FORMAT}';
    access_log {root / "access.log"} ce buffer=256k flush=1s;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_buffer_size 16k;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
{servers}
}}
"""


def _server_block(port: int) -> str:
    # reuseport: one accept queue per worker, so a connection storm (Knative opens a new
    # connection per event) has twice the backlog and both workers take connections.
    return f"""    server {{
        listen 127.0.0.1:{port} reuseport backlog=65535;
        location / {{ return 202; }}
    }}"""


def _await_listening(sinks: Sinks, ports: list[int], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    for port in ports:
        while not _accepts(port):
            if not sinks.process.running() or time.monotonic() > deadline:
                sinks.stop()
                raise SinkError(f"nginx did not listen on {port}:\n{sinks.process.log_tail()}")
            time.sleep(0.05)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
