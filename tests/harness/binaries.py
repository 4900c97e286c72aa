"""Where the peer binaries (kube-apiserver, etcd, knative-mtping, event_display) live.

Its job: resolve a binary by name in $MTPING_BIN_DIR or <repo>/.bin, fail loudly with the
command that builds it, and read versions cheaply from `--version`. It must never skip a
test or fall back to some other binary found on $PATH.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN_DIR_ENV = "MTPING_BIN_DIR"
KUBE_APISERVER = "kube-apiserver"
ETCD = "etcd"
KNATIVE_MTPING = "knative-mtping"
EVENT_DISPLAY = "event_display"


class MissingBinaryError(RuntimeError):
    """A peer binary has not been built (or MTPING_BIN_DIR points at the wrong place)."""


def bin_dir() -> Path:
    """The directory holding the peer binaries."""
    configured = os.environ.get(BIN_DIR_ENV)
    return Path(configured) if configured else REPO_ROOT / ".bin"


def require(name: str) -> Path:
    """The path of binary `name`; MissingBinaryError (saying how to build it) if absent."""
    path = bin_dir() / name
    if not os.access(path, os.X_OK):
        raise MissingBinaryError(
            f"{path} is missing or not executable: run `make peers` (hack/build-peers.sh) "
            f"to build kube-apiserver, etcd, knative-mtping and event_display, "
            f"or point ${BIN_DIR_ENV} at a directory holding them"
        )
    return path


def version_line(name: str) -> str:
    """The version `name --version` reports (e.g. 'v1.34.4', '3.6.5'); raises if not built."""
    completed = subprocess.run(
        [str(require(name)), "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return _parse_version(completed.stdout)


def _parse_version(output: str) -> str:
    # kube-apiserver prints "Kubernetes v1.34.4"; etcd prints "etcd Version: 3.6.5" first.
    match = re.search(r"(?:Kubernetes|etcd Version:)\s+(v?\d+\.\d+\.\d+\S*)", output)
    if match is None:
        raise ValueError(f"no version in {output!r}")
    return match.group(1)
