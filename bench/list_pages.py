"""How long the first list of N PingSources takes, and what it costs in memory, per page size.

    .venv/bin/python -m bench.list_pages --sources 20000 --limits 500,1000,2000 [--rv0]

On a real kube-apiserver + etcd (tests.harness) it creates N workload sources (bench.workload),
then, for each page size, lists them twice in a fresh child process each time, with mtping's
own list code (`kube.watching.list_into`, prefetching the next page), into either mtping's
registry (parse + schedule, as `mtping run` does) or nothing (`drop`: the apiserver, the
transfer and the JSON decoding alone). A child reports the seconds the list took and its peak
RSS (`VmHWM`) over what it had before listing. `--rv0` adds lists with resourceVersion="0",
served from the apiserver's watch cache. It prints one line per list; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench import workload
from bench.adapters import memory_kib
from mtping import gcpause
from mtping.kube.client import connect
from mtping.kube.watching import (
    PINGSOURCES,
    ListApplier,
    RawObject,
    _request_json,
    list_into,
)
from mtping.lifecycle import source_parser
from mtping.resolving import SpecResolver
from mtping.scheduler import Scheduler
from mtping.settings import Settings
from mtping.sources import SourceRegistry
from tests.harness.controlplane import ControlPlane

APPLIERS = ("registry", "drop")


class _Drop:
    """A ListApplier that keeps nothing."""

    def add(self, objects: Iterable[dict[str, Any]]) -> None:
        for _ in objects:
            pass

    def finish(self) -> None:
        """Nothing kept, nothing to delete."""


async def _child(kubeconfig: str, limit: int, applier_name: str, rv0: bool) -> dict[str, Any]:
    applier: ListApplier = _Drop()
    if applier_name == "registry":
        scheduler: Scheduler[Any, Any] = Scheduler(
            fire=lambda tick, now: None, catch_up=timedelta(seconds=10)
        )
        registry = SourceRegistry(
            scheduler=scheduler, resolver=SpecResolver(), parse=source_parser(Settings())
        )
        applier = registry.begin_list()

    async def fetch(token: str | None) -> RawObject:
        version = "0" if rv0 and token is None else None
        return await _request_json(
            api, PINGSOURCES, limit=limit, _continue=token, resource_version=version
        )

    async with await connect(kubeconfig) as api:
        await _request_json(api, PINGSOURCES, limit=1)  # connection and credentials ready
        before = memory_kib_self()
        began = time.monotonic()
        with gcpause.paused():
            listed = await list_into(applier, fetch)
            applier.finish()
        seconds = time.monotonic() - began
    return {
        "limit": limit,
        "rv0": rv0,
        "applier": applier_name,
        "count": listed.count,
        "seconds": round(seconds, 3),
        "hwm_over_start_kib": memory_kib_self()["VmHWM"] - before["VmHWM"],
    }


def memory_kib_self() -> dict[str, int]:
    return memory_kib(os.getpid())


def _run_child(kubeconfig: Path, *, limit: int, applier: str, rv0: bool) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.list_pages", "--child", str(kubeconfig)]
    argv += ["--limits", str(limit), "--applier", applier, *(["--rv0"] if rv0 else [])]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.list_pages")
    parser.add_argument("--sources", type=int, default=20000)
    parser.add_argument("--limits", default="500,1000,2000")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--rv0", action="store_true", help="also lists at resourceVersion=0")
    parser.add_argument("--applier", choices=APPLIERS, default=None)
    parser.add_argument("--child", metavar="KUBECONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    limits = [int(limit) for limit in args.limits.split(",")]
    if args.child:
        result = asyncio.run(_child(args.child, limits[0], args.applier or "drop", args.rv0))
        print(json.dumps(result))
        return 0
    appliers = [args.applier] if args.applier else list(APPLIERS)
    with (
        tempfile.TemporaryDirectory(prefix="mtping-list-") as work,
        ControlPlane(state_dir=Path(work) / "cluster") as plane,
    ):
        plane.install_crds()
        for namespace in workload.namespaces():
            plane.create_namespace(namespace)
        sinks = ["http://127.0.0.1:9/"]
        objects = [workload.workload_source(i, sinks) for i in range(args.sources)]
        seconds = workload.create_ready(plane.admin_credentials, objects)
        print(f"created {args.sources} in {seconds:.0f}s", flush=True)
        variants = [(limit, False) for limit in limits]
        variants += [(limits[0], True)] if args.rv0 else []
        for _ in range(args.repeat):
            for applier in appliers:
                for limit, rv0 in variants:
                    result = _run_child(plane.kubeconfig, limit=limit, applier=applier, rv0=rv0)
                    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
