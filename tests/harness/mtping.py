"""Our own `mtping run` as a real child process, for integration tests.

Its job: start the installed console script (the one `make install` puts in .venv/bin) against
a kubeconfig with free loopback ports for probes and metrics, wait until `/readiness` says the
first list is applied, read `/metrics`, and stop it with a real signal. Tests see it exactly
as a kubelet and Prometheus would.
"""

from __future__ import annotations

import asyncio
import os
import sys
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.harness.process import ManagedProcess, free_port

MTPING = Path(sys.executable).with_name("mtping")


@dataclass
class MtpingProcess:
    process: ManagedProcess
    health_url: str
    metrics_url: str

    def stop(self) -> None:
        self.process.stop(grace_seconds=15.0)

    def log_text(self) -> str:
        return self.process.log_text()

    async def wait_ready(self, timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while not await asyncio.to_thread(self._answers_ok, f"{self.health_url}/readiness"):
                if not self.process.running():
                    raise RuntimeError(f"mtping exited:\n{self.log_text()}")
                await asyncio.sleep(0.1)

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample of /metrics (0.0 when the series does not exist yet)."""
        with urllib.request.urlopen(f"{self.metrics_url}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return 0.0

    @staticmethod
    def _answers_ok(url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False


def start_mtping(kubeconfig: Path, *, log_dir: Path, args: Sequence[str] = ()) -> MtpingProcess:
    health, metrics = free_port(), free_port()
    # The webhook only where a test asks for it: its default port 8443 is shared by all.
    webhook = [] if any(arg.startswith("--webhook-port") for arg in args) else ["--webhook-port=0"]
    argv = [
        str(MTPING),
        "run",
        f"--kubeconfig={kubeconfig}",
        f"--health-port={health}",
        f"--metrics-port={metrics}",
        *webhook,
        *args,
    ]
    # K_NO_SHUTDOWN_AFTER=59: a test's SIGTERM never waits for the next minute.
    env = {**os.environ, "K_NO_SHUTDOWN_AFTER": "59", "POD_NAME": "mtping-under-test"}
    env.pop("KUBECONFIG", None)
    process = ManagedProcess(argv, log_path=log_dir / "mtping.log", env=env)
    return MtpingProcess(process, f"http://127.0.0.1:{health}", f"http://127.0.0.1:{metrics}")
