"""Child processes of the harness: each in its own process group, logged to a file, always reaped.

Its job: start a binary detached from the terminal's signals, stop it politely (SIGTERM, then
SIGKILL after a grace period), kill it abruptly on demand, and make sure nothing it started
outlives the Python process (an atexit guard, plus PR_SET_PDEATHSIG tied to one long-lived
spawner thread). It must never kill by name: only the process groups it created itself.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_LOG_TAIL_BYTES = 6000

_live: set[ManagedProcess] = set()
_live_lock = threading.Lock()


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the kernel picked it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """Whether nothing listens on `port` on any local address (binding it succeeds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As Go's servers do: a port with only TIME_WAIT connections left is free to listen on.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True


def _die_with_parent_hook() -> None:
    """Runs in the child between fork and exec: SIGKILL it when the spawning thread dies."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


# Resolved in the parent: the child must not load libraries between fork and exec.
_libc = ctypes.CDLL(None, use_errno=True)
# One long-lived thread forks every child, so callers may be short-lived worker threads.
_SPAWNER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="spawner")


class ManagedProcess:
    """One running binary: its own session/process group, output appended to `log_path`."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.name = Path(argv[0]).name
        self._popen = self._spawn(env)
        with _live_lock:
            _live.add(self)

    def _spawn(self, env: Mapping[str, str] | None) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as log:

            def spawn() -> subprocess.Popen[bytes]:
                return subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=None if env is None else dict(env),
                    start_new_session=True,
                    preexec_fn=_die_with_parent_hook,
                )

            # PDEATHSIG fires when the *thread* that forked exits: fork from one that never does.
            return _SPAWNER.submit(spawn).result()

    @property
    def pid(self) -> int:
        return self._popen.pid

    def running(self) -> bool:
        return self._popen.poll() is None

    def returncode(self) -> int | None:
        return self._popen.poll()

    def stop(self, *, grace_seconds: float = 10.0) -> None:
        """SIGTERM the group, SIGKILL it if still alive after `grace_seconds`; always reap."""
        if self.running():
            self._signal_group(signal.SIGTERM)
            try:
                self._popen.wait(timeout=grace_seconds)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
        self._reap()

    def kill(self) -> None:
        """SIGKILL the whole group at once (a crash, from the rest of the system's view)."""
        self._signal_group(signal.SIGKILL)
        self._reap()

    def _reap(self) -> None:
        # Group members the leader forked may linger after it exits; they get no grace.
        self._signal_group(signal.SIGKILL)
        self._popen.wait()
        with _live_lock:
            _live.discard(self)

    def _signal_group(self, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, signum)

    def rss_kib(self) -> int:
        """Resident set size (VmRSS) of the process, in KiB."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError(f"{self.name} (pid {self.pid}) reports no VmRSS")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, size: int = _LOG_TAIL_BYTES) -> str:
        return self.log_text()[-size:]


def wait_until(
    probe: Callable[[], object], *, timeout: float, interval: float = 0.1, what: str
) -> None:
    """Poll `probe` until it returns truthy; the TimeoutError names `what`."""
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@atexit.register
def _kill_leftovers() -> None:
    """Last line of defence: a crashed session must leave no etcd or apiserver behind."""
    with _live_lock:
        leftovers = list(_live)
    for process in leftovers:
        process.kill()
