"""Hooks for every test run: the peer binaries' versions in the header, no leaked asyncio tasks.

It must stay tiny and cheap: unit-only runs load it too, so it never starts a process other
than `<binary> --version`, and never needs the binaries to exist.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator

import pytest

from tests.harness import binaries


def pytest_report_header() -> str:
    versions = [
        f"{name} {_version_or_reason(name)}" for name in (binaries.KUBE_APISERVER, binaries.ETCD)
    ]
    return f"peers ({binaries.bin_dir()}): " + ", ".join(versions)


def _version_or_reason(name: str) -> str:
    try:
        return binaries.version_line(name)
    except binaries.MissingBinaryError:
        return "not built (make peers)"
    except (OSError, subprocess.SubprocessError, ValueError) as error:
        return f"unknown ({error.__class__.__name__})"


@pytest.fixture(autouse=True)
async def no_leftover_tasks() -> AsyncIterator[None]:
    """Fail the test if it returns while asyncio tasks it started are still pending."""
    yield
    await asyncio.sleep(0)  # let tasks cancelled at the very end finish unwinding
    current = asyncio.current_task()
    leftovers = [task for task in asyncio.all_tasks() if task is not current]
    for task in leftovers:
        task.cancel()
    if leftovers:
        pytest.fail(f"test left {len(leftovers)} asyncio task(s) running: {leftovers}")
