"""`python -m tests.harness up|down`: the test control plane as a background dev cluster.

`up` starts a detached supervisor process that holds a ControlPlane (etcd + kube-apiserver,
CRDs from config/crd installed), waits until it is ready and prints the KUBECONFIG export
line. `down` asks the supervisor to stop (SIGTERM), waits, and checks that neither it nor
its etcd/kube-apiserver survived. It must never signal a process it did not record in the
state dir, and never leave the cluster running after `down` returns 0.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from tests.harness.binaries import REPO_ROOT
from tests.harness.controlplane import ControlPlane

_SUPERVISOR_PID = "supervisor.pid"
_PIDS = "pids.json"
_READY = "ready"
_UP_TIMEOUT = 180.0
_DOWN_TIMEOUT = 30.0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    state_dir = Path(args.state_dir).resolve()
    commands = {"up": _up, "down": _down, "_supervise": _supervise}
    return commands[args.command](state_dir)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.harness")
    parser.add_argument("command", choices=["up", "down", "_supervise"])
    parser.add_argument("--state-dir", default=".cluster", help="kubeconfig, logs, etcd data")
    return parser


# -- up ----------------------------------------------------------------------------------------


def _up(state_dir: Path) -> int:
    running = _read_pid(state_dir)
    if running is not None and _ours(running, state_dir):
        print(f"already running (state dir {state_dir})", file=sys.stderr)
        print(_export_line(state_dir))
        return 0
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / _READY).unlink(missing_ok=True)
    supervisor = _spawn_supervisor(state_dir)
    (state_dir / _SUPERVISOR_PID).write_text(f"{supervisor.pid}\n")
    if not _await_ready(state_dir, supervisor):
        log = (state_dir / "supervisor.log").read_text(errors="replace")
        print(f"control plane failed to start:\n{log[-8000:]}", file=sys.stderr)
        _down(state_dir)
        return 1
    print(_export_line(state_dir))
    return 0


def _spawn_supervisor(state_dir: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "tests.harness", "_supervise", "--state-dir", str(state_dir)]
    with (state_dir / "supervisor.log").open("ab") as log:
        return subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # detached: survives this shell and its Ctrl-C
        )


def _await_ready(state_dir: Path, supervisor: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + _UP_TIMEOUT
    while not (state_dir / _READY).exists():
        if supervisor.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _export_line(state_dir: Path) -> str:
    return f"export KUBECONFIG={state_dir / 'kubeconfig'}"


# -- the detached supervisor -------------------------------------------------------------------


def _supervise(state_dir: Path) -> int:
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, request_stop)
    with ControlPlane(state_dir=state_dir) as plane:
        plane.install_crds()
        _write_pids(state_dir, plane)
        (state_dir / _READY).write_text(json.dumps({"server": plane.server_url, **plane.timings}))
        print(f"ready: {plane.server_url} {plane.timings}", flush=True)
        _hold(plane, stop_requested)
    _forget(state_dir)
    return 0


def _write_pids(state_dir: Path, plane: ControlPlane) -> None:
    pids = {name: process.pid for name, process in plane.processes().items()}
    pids["supervisor"] = os.getpid()
    (state_dir / _PIDS).write_text(json.dumps(pids))


def _hold(plane: ControlPlane, stop_requested: threading.Event) -> None:
    while not stop_requested.wait(1.0):
        dead = [name for name, process in plane.processes().items() if not process.running()]
        if dead:
            print(f"{dead} exited; shutting down\n{plane.log_tails()}", flush=True)
            return


def _forget(state_dir: Path) -> None:
    for name in (_READY, _PIDS, _SUPERVISOR_PID):
        (state_dir / name).unlink(missing_ok=True)


# -- down --------------------------------------------------------------------------------------


def _down(state_dir: Path) -> int:
    recorded = _recorded_pids(state_dir)
    supervisor = _read_pid(state_dir)
    if supervisor is not None and _ours(supervisor, state_dir):
        os.kill(supervisor, signal.SIGTERM)
        _await_exit([supervisor, *recorded.values()])
    survivors = {name: pid for name, pid in recorded.items() if _ours(pid, state_dir)}
    for pid in survivors.values():
        _kill_group(pid)
    _forget(state_dir)
    if survivors:
        print(f"had to SIGKILL survivors: {survivors}", file=sys.stderr)
        return 1
    print(f"stopped (logs kept in {state_dir})")
    return 0


def _recorded_pids(state_dir: Path) -> dict[str, int]:
    path = state_dir / _PIDS
    return (
        {str(k): int(v) for k, v in json.loads(path.read_text()).items()} if path.exists() else {}
    )


def _await_exit(pids: list[int]) -> None:
    deadline = time.monotonic() + _DOWN_TIMEOUT
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def _read_pid(state_dir: Path) -> int | None:
    path = state_dir / _SUPERVISOR_PID
    return int(path.read_text().strip()) if path.exists() else None


def _ours(pid: int, state_dir: Path) -> bool:
    """Whether `pid` is alive and still one of ours (its command line names the state dir)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    return _alive(pid) and str(state_dir).encode() in cmdline


def _alive(pid: int | None) -> bool:
    """Whether `pid` is a live (non-zombie) process."""
    if pid is None:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


if __name__ == "__main__":
    sys.exit(main())
