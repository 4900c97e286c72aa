"""Sampling mtping with py-spy from outside, and reading the samples back as top-N tables.

py-spy attaches to the running process (no code change, `--nonblocking` so mtping is never
paused) and writes collapsed stacks ("frame;frame;... count"). Idle samples are not recorded,
so shares are of the time mtping was on a CPU. It must never profile a process it did not
start.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tests.harness.binaries import REPO_ROOT
from tests.harness.process import ManagedProcess

RATE_HZ = 100
# Paths shortened to what identifies the module: after site-packages, the stdlib or the repo.
_PREFIX = re.compile(rf".*/(?:site-packages|lib/python3\.\d+)/|^{re.escape(str(REPO_ROOT))}/")


class ProfilerError(RuntimeError):
    """py-spy is missing or failed."""


@dataclass(frozen=True, slots=True)
class Entry:
    function: str
    share: float
    """Fraction of the busy samples."""


@dataclass(frozen=True, slots=True)
class Profile:
    phase: str
    samples: int
    self_top: tuple[Entry, ...]
    total_top: tuple[Entry, ...]
    raw_path: str


def py_spy() -> str:
    found = Path(sys.executable).with_name("py-spy")
    if found.exists():
        return str(found)
    located = shutil.which("py-spy")
    if located is None:
        raise ProfilerError("py-spy is not installed: pip install -e '.[bench]'")
    return located


def start_recording(pid: int, *, out: Path, seconds: int) -> ManagedProcess:
    """py-spy recording `pid` for `seconds` into `out` (collapsed stacks, no line numbers)."""
    argv = [
        py_spy(),
        "record",
        f"--pid={pid}",
        f"--rate={RATE_HZ}",
        f"--duration={seconds}",
        "--format=raw",
        "--nolineno",
        "--nonblocking",
        f"--output={out}",
    ]
    return ManagedProcess(argv, log_path=out.with_suffix(".log"))


def summarise(phase: str, raw: Path, *, top: int = 15) -> Profile:
    """Top functions by own time and by time including callees."""
    own: Counter[str] = Counter()
    including: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        samples += count
        own[_short(frames[-1])] += count
        for frame in {_short(f) for f in frames}:
            including[frame] += count
    return Profile(
        phase=phase,
        samples=samples,
        self_top=_top(own, samples, top),
        total_top=_top(including, samples, top),
        raw_path=str(raw),
    )


def _short(frame: str) -> str:
    """ "func (/path/site-packages/pkg/mod.py)" -> "func (pkg/mod.py)"."""
    function, _, location = frame.partition(" (")
    path = _PREFIX.sub("", location.rstrip(")"))
    return f"{function} ({path})" if path else function


def _top(counts: Counter[str], samples: int, top: int) -> tuple[Entry, ...]:
    return tuple(
        Entry(function=name, share=count / max(samples, 1))
        for name, count in counts.most_common(top)
    )
