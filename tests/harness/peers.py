"""Knative's own binaries as test peers: event_display (a sink) and knative-mtping (the original).

Its job: start them with the flags and environment they need outside a cluster, and hand back
a handle to stop them and read their logs. Facts it relies on (from Knative's source):
event_display always listens on :8080 (the CloudEvents SDK's default; no flag or env changes
it); knative-mtping reads `--kubeconfig`, needs NAMESPACE/SYSTEM_NAMESPACE and the
ConfigMaps config-logging and config-observability there, serves health probes on :8080 (a
bind failure there is ignored) and pprof on $PROFILING_PORT. It must never leave the peers
running (ManagedProcess reaps them).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness import binaries
from tests.harness.kubeconfig import read_kubeconfig
from tests.harness.manifests import Applier
from tests.harness.process import ManagedProcess, free_port, port_is_free
from tests.harness.rest import RestClient

EVENT_DISPLAY_PORT = 8080
KNATIVE_NAMESPACE = "knative-eventing"
KNATIVE_CONFIG_MAPS = ("config-logging", "config-observability")


class PeerError(RuntimeError):
    """A peer binary could not start or did not log what was awaited."""


@dataclass(frozen=True, slots=True)
class Peer:
    """A running peer binary: stop it, read its log, wait for a line in it."""

    process: ManagedProcess
    url: str = ""

    def stop(self) -> None:
        self.process.stop(grace_seconds=5.0)

    def log_text(self) -> str:
        return self.process.log_text()

    async def wait_for_log(self, needle: str) -> str:
        """Poll the log until it contains `needle` (bound it with asyncio.timeout); the log."""
        while needle not in (text := self.log_text()):
            if not self.process.running():
                raise PeerError(f"{self.process.name} exited:\n{text[-4000:]}")
            await asyncio.sleep(0.1)
        return text


def start_event_display(*, log_dir: Path) -> Peer:
    """Start event_display on :8080 (its only port); PeerError if :8080 is taken."""
    if not port_is_free(EVENT_DISPLAY_PORT):
        raise PeerError(
            f"event_display needs port {EVENT_DISPLAY_PORT}, which is in use (it takes no "
            "flags: even `event_display --version` starts a server there)"
        )
    binary = binaries.require(binaries.EVENT_DISPLAY)
    env = {**os.environ, "REQUEST_LOGGING_ENABLED": "false"}
    process = ManagedProcess([str(binary)], log_path=log_dir / "event_display.log", env=env)
    return Peer(process=process, url=f"http://127.0.0.1:{EVENT_DISPLAY_PORT}")


async def wait_until_listening(peer: Peer) -> None:
    """Wait until the peer's URL accepts TCP connections (bound it with asyncio.timeout)."""
    host, port = peer.url.removeprefix("http://").split(":")
    while True:
        try:
            _reader, writer = await asyncio.open_connection(host, int(port))
        except OSError:
            if not peer.process.running():
                raise PeerError(f"{peer.url} never listened:\n{peer.log_text()}") from None
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return


def start_knative_mtping(
    kubeconfig: Path, *, log_dir: Path, namespace: str = KNATIVE_NAMESPACE
) -> Peer:
    """Start Knative's pingsource-mt-adapter (no leader election) against `kubeconfig`.

    First creates what it insists on (its namespace and watched ConfigMaps) with the same
    kubeconfig, so pass one allowed to (the control plane's admin kubeconfig).
    """
    credentials = read_kubeconfig(kubeconfig, scratch_dir=log_dir / "knative-mtping-credentials")
    applier = Applier(RestClient(credentials))
    for obj in _knative_system_objects(namespace):
        applier.apply(obj)
    binary = binaries.require(binaries.KNATIVE_MTPING)
    argv = [str(binary), f"--kubeconfig={kubeconfig}", "--disable-ha"]
    process = ManagedProcess(
        argv, log_path=log_dir / "knative-mtping.log", env=_mtping_env(namespace)
    )
    return Peer(process=process)


def _knative_system_objects(namespace: str) -> list[dict[str, Any]]:
    # Its ConfigMap watcher refuses to start while a watched ConfigMap is missing.
    namespace_obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    config_maps = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace},
            "data": {},
        }
        for name in KNATIVE_CONFIG_MAPS
    ]
    return [namespace_obj, *config_maps]


def _mtping_env(namespace: str) -> dict[str, str]:
    # Config maps (config-logging, config-observability) are looked up in NAMESPACE; absent
    # ones fall back to defaults. K_NO_SHUTDOWN_AFTER=59: never delay exit on SIGTERM in tests.
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "NAMESPACE": namespace,
        "SYSTEM_NAMESPACE": namespace,
        "POD_NAME": "knative-mtping-harness",
        "K_NO_SHUTDOWN_AFTER": "59",
        "PROFILING_PORT": str(free_port()),
        "K_SINK_TIMEOUT": "5",
    }
