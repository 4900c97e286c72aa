"""The two adapters under test as child processes, and what /proc says about them.

mtping runs as `mtping run --mode adapter` with config/'s ServiceAccount; Knative's
pingsource-mt-adapter runs with the admin kubeconfig, as the harness starts it. Each is told
when it has scheduled every source: mtping by its `mtping_sources_scheduled` gauge, Knative by
its log, which has one "Synchronizing schedule" line per source it adds to its cron. CPU and
memory come from /proc, so measuring costs the adapter nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from tests.harness.mtping import MtpingProcess, start_mtping
from tests.harness.peers import Peer, start_knative_mtping
from tests.harness.process import ManagedProcess

MTPING = "mtping"
KNATIVE = "knative"
KNATIVE_SYNC_LINE = b'"message":"Synchronizing schedule"'
KNATIVE_KEY = b'"knative.dev/key":"'
# Knative's default logging samples repeated messages (100 a second, then 1 in 100), which
# would hide "Synchronizing schedule" lines: the same JSON encoding, without sampling (null:
# its defaults start from zap's production config, which samples).
KNATIVE_LOGGING = {
    "level": "info",
    "sampling": None,
    "development": False,
    "outputPaths": ["stdout"],
    "errorOutputPaths": ["stderr"],
    "encoding": "json",
    "encoderConfig": {
        "timeKey": "timestamp",
        "levelKey": "severity",
        "nameKey": "logger",
        "callerKey": "caller",
        "messageKey": "message",
        "stacktraceKey": "stacktrace",
        "lineEnding": "",
        "levelEncoder": "",
        "timeEncoder": "iso8601",
        "durationEncoder": "",
        "callerEncoder": "",
    },
}
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Adapter(Protocol):
    """A running adapter: its process, how many sources it has scheduled, how to stop it."""

    name: str

    @property
    def process(self) -> ManagedProcess: ...

    def scheduled(self, expected: int | None = None) -> int: ...

    def stop(self) -> None: ...


@dataclass
class MtpingAdapter:
    handle: MtpingProcess
    name: str = MTPING

    @property
    def process(self) -> ManagedProcess:
        return self.handle.process

    def scheduled(self, expected: int | None = None) -> int:
        try:
            return int(self.handle.metric("mtping_sources_scheduled"))
        except OSError:  # not serving /metrics yet
            return 0

    def stop(self) -> None:
        self.handle.stop()


@dataclass
class KnativeAdapter:
    peer: Peer
    name: str = KNATIVE
    synced: set[bytes] = field(default_factory=set)
    """Keys of the sources it has put in its cron so far."""
    all_synced_at: float | None = None
    """Log timestamp of the line that completed `synced` to the awaited count."""
    _offset: int = 0

    @property
    def process(self) -> ManagedProcess:
        return self.peer.process

    def scheduled(self, expected: int | None = None) -> int:
        """Distinct sources its log says it added to its cron ("Synchronizing schedule")."""
        log = self.process.log_path
        if not log.exists():
            return 0
        with log.open("rb") as stream:
            stream.seek(self._offset)
            chunk = stream.read()
        complete = chunk.rfind(b"\n") + 1  # a half-written line is read next time
        self._offset += complete
        for line in chunk[:complete].splitlines():
            self._note(line, expected)
        return len(self.synced)

    def _note(self, line: bytes, expected: int | None) -> None:
        if KNATIVE_SYNC_LINE not in line:
            return
        key = line.partition(KNATIVE_KEY)[2].partition(b'"')[0]
        if key and key not in self.synced:
            self.synced.add(key)
            if len(self.synced) == expected:
                self.all_synced_at = _zap_time(line)

    def stop(self) -> None:
        self.peer.stop()


def start_mtping_adapter(kubeconfig: Path, log_dir: Path) -> MtpingAdapter:
    return MtpingAdapter(start_mtping(kubeconfig, log_dir=log_dir, args=["--mode=adapter"]))


def start_knative_adapter(admin_kubeconfig: Path, log_dir: Path) -> KnativeAdapter:
    return KnativeAdapter(start_knative_mtping(admin_kubeconfig, log_dir=log_dir))


def wait_mtping_ready(adapter: MtpingAdapter, timeout: float = 60.0) -> None:
    asyncio.run(adapter.handle.wait_ready(timeout=timeout))


def wait_knative_started(adapter: KnativeAdapter, timeout: float = 60.0) -> None:
    """Until its job runner runs (it has synced its informers by then)."""
    asyncio.run(asyncio.wait_for(adapter.peer.wait_for_log("Starting job runner"), timeout))


def knative_logging_config_map(namespace: str) -> dict[str, Any]:
    """config-logging for Knative's adapter: its usual JSON logs, unsampled."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "config-logging", "namespace": namespace},
        "data": {"zap-logger-config": json.dumps(KNATIVE_LOGGING)},
    }


def _zap_time(line: bytes) -> float | None:
    try:
        stamp = json.loads(line)["timestamp"]
    except (ValueError, KeyError):
        return None
    if isinstance(stamp, int | float):
        return float(stamp)
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()


# -- /proc ------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the ")" closing the command name, utime and stime are the 12th and 13th fields.
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of the process, in KiB."""
    wanted = {"VmRSS", "VmHWM"}
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in wanted:
            found[key] = int(value.split()[0])
    return found
