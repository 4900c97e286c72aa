"""The Reloader against real files and a recording registry: what reaches the registry, what is
reported, and how fast. Polls are driven by hand (`poll()`), except in the timing tests."""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from mtping.console import Console
from mtping.local.reporting import report_reload
from mtping.local.resolving import NEEDS_SINK, LocalResolver
from mtping.local.watching import Reload, Reloader
from mtping.model import SourceKey, parse_source, source_key

URI_SOURCE = """\
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata:
  name: {name}
spec:
  schedule: "{schedule}"
  sink:
    uri: http://127.0.0.1:9/
"""
REF_SOURCE = """\
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata:
  name: {name}
spec:
  sink:
    ref: {{apiVersion: v1, kind: Service, name: display}}
"""


def source(name: str, schedule: str = "* * * * *") -> str:
    return URI_SOURCE.format(name=name, schedule=schedule)


class RecordingRegistry:
    def __init__(self) -> None:
        self.calls: list[dict[SourceKey, dict[str, Any]]] = []

    def replace_all(self, objects: Iterable[dict[str, Any]]) -> None:
        self.calls.append({source_key(obj): obj for obj in objects})

    @property
    def current(self) -> dict[SourceKey, dict[str, Any]]:
        return self.calls[-1]

    def schedules(self) -> dict[str, str]:
        return {key.name: obj["spec"].get("schedule", "") for key, obj in self.current.items()}


class Files:
    """Writes files with an mtime that always moves, so every write is a visible change."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._clock = time.time_ns()

    def write(self, name: str, text: str) -> Path:
        path = self.folder / name
        path.write_text(text)
        self._clock += 1_000_000_000
        os.utime(path, ns=(self._clock, self._clock))
        return path


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


@pytest.fixture
def registry() -> RecordingRegistry:
    return RecordingRegistry()


@pytest.fixture
def reloads() -> list[Reload]:
    return []


@pytest.fixture
def reloader(tmp_path: Path, registry: RecordingRegistry, reloads: list[Reload]) -> Reloader:
    return Reloader(
        paths=[tmp_path],
        parse=parse_source,
        resolver=LocalResolver(),
        registry=registry,
        on_reload=reloads.append,
    )


async def settled(reloader: Reloader) -> Reload | None:
    """Two polls: the first sees the change, the second (stamp unchanged) reads the file."""
    assert await reloader.poll() is None
    return await reloader.poll()


async def test_initial_load_schedules_every_valid_source(
    files: Files, reloader: Reloader, registry: RecordingRegistry
) -> None:
    files.write("a.yaml", source("a"))
    files.write("b.yaml", source("b", "*/2 * * * * *"))
    first = await reloader.load()
    assert registry.schedules() == {"a": "* * * * *", "b": "*/2 * * * * *"}
    assert [entry.source.spec.key.name for entry in first.added] == ["a", "b"]
    assert first.files == 2 and not first.problems


async def test_an_edit_is_read_once_it_has_settled(
    files: Files, reloader: Reloader, registry: RecordingRegistry
) -> None:
    files.write("a.yaml", source("a"))
    await reloader.load()
    files.write("a.yaml", source("a", "0 * * * *"))
    reload = await settled(reloader)
    assert reload is not None
    assert [entry.source.spec.key.name for entry in reload.changed] == ["a"]
    assert registry.schedules() == {"a": "0 * * * *"}
    assert await reloader.poll() is None  # nothing new: no reload, no registry call
    assert len(registry.calls) == 2


async def test_a_bad_edit_keeps_the_last_good_version_of_that_file(
    files: Files, reloader: Reloader, registry: RecordingRegistry
) -> None:
    files.write("a.yaml", source("a") + "---\n" + source("a2"))
    files.write("b.yaml", source("b"))
    await reloader.load()
    good = dict(registry.current)
    files.write("a.yaml", source("a", "0 * * * *") + "---\n" + source("a2", "99 * * * *"))
    files.write("b.yaml", source("b", "0 * * * *"))
    reload = await settled(reloader)
    assert reload is not None
    assert [str(problem) for problem in reload.problems] == [
        f"{files.folder / 'a.yaml'}:2: spec.schedule: invalid schedule '99 * * * *': "
        "minute field '99' out of range 0-59"
    ]
    assert reload.kept == ((str(files.folder / "a.yaml"), 2),)
    assert registry.schedules() == {"a": "* * * * *", "a2": "* * * * *", "b": "0 * * * *"}
    assert registry.current[SourceKey("default", "a")] == good[SourceKey("default", "a")]
    files.write("a.yaml", "metadata: [broken")  # a syntax error keeps it too
    reload = await settled(reloader)
    assert reload is not None and reload.problems[0].field == "yaml"
    assert registry.schedules()["a"] == "* * * * *"
    files.write("a.yaml", source("a", "5 * * * *"))  # a good version replaces the whole file
    await settled(reloader)
    assert registry.schedules() == {"a": "5 * * * *", "b": "0 * * * *"}


async def test_a_file_seen_first_with_problems_contributes_its_valid_sources(
    files: Files, reloader: Reloader, registry: RecordingRegistry
) -> None:
    files.write("a.yaml", source("good") + "---\n" + source("bad", "nope"))
    first = await reloader.load()
    assert registry.schedules() == {"good": "* * * * *"}
    assert [problem.field for problem in first.problems] == ["spec.schedule"]
    assert first.kept == ()


async def test_removing_a_file_or_a_document_unschedules_its_sources(
    files: Files, reloader: Reloader, registry: RecordingRegistry
) -> None:
    files.write("a.yaml", source("a") + "---\n" + source("a2"))
    path = files.write("b.yaml", source("b"))
    await reloader.load()
    path.unlink()
    reload = await reloader.poll()  # a deletion needs no settling
    assert reload is not None and reload.removed == (SourceKey("default", "b"),)
    files.write("a.yaml", source("a"))
    reload = await settled(reloader)
    assert reload is not None and reload.removed == (SourceKey("default", "a2"),)
    assert registry.schedules() == {"a": "* * * * *"}


async def test_unresolvable_and_duplicate_sources_are_skipped_and_reported_once(
    files: Files, reloader: Reloader, registry: RecordingRegistry
) -> None:
    files.write("a.yaml", REF_SOURCE.format(name="ref") + "---\n" + source("twice"))
    files.write("b.yaml", source("twice", "0 * * * *"))
    first = await reloader.load()
    assert sorted((s.source.spec.key.name, s.reason) for s in first.skipped) == [
        ("ref", NEEDS_SINK),
        ("twice", f"also defined in {files.folder / 'a.yaml'}:2; this one is ignored"),
    ]
    assert registry.schedules() == {"twice": "* * * * *"}
    files.write("c.yaml", source("c"))
    reload = await settled(reloader)
    assert reload is not None and reload.skipped == ()  # still skipped, not repeated


async def test_with_a_sink_override_ref_sources_are_scheduled(
    files: Files, tmp_path: Path, registry: RecordingRegistry
) -> None:
    files.write("a.yaml", REF_SOURCE.format(name="ref"))
    reloader = Reloader(
        paths=[tmp_path],
        parse=parse_source,
        resolver=LocalResolver("http://127.0.0.1:8080/"),
        registry=registry,
        on_reload=lambda _: None,
    )
    first = await reloader.load()
    assert [entry.target.url for entry in first.added] == ["http://127.0.0.1:8080/"]
    assert list(registry.schedules()) == ["ref"]


# --- timing, with the real poll interval ---------------------------------------------------


async def within(seconds: float, condition: Callable[[], bool]) -> float:
    """Seconds until `condition` held, polling every 10 ms; fails after `seconds`."""
    started = time.monotonic()
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.01)
    return time.monotonic() - started


async def test_edits_and_removals_take_effect_within_a_second(
    files: Files, reloader: Reloader, registry: RecordingRegistry
) -> None:
    path = files.write("a.yaml", source("a"))
    await reloader.load()
    task = asyncio.create_task(reloader.run())
    try:
        files.write("a.yaml", source("a", "0 * * * *"))
        await within(1.0, lambda: registry.schedules() == {"a": "0 * * * *"})
        files.write("b.yaml", source("b"))
        await within(1.0, lambda: "b" in registry.schedules())
        path.unlink()
        await within(1.0, lambda: registry.schedules() == {"b": "* * * * *"})
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# --- what the human sees -------------------------------------------------------------------


async def test_report_lines(files: Files, reloader: Reloader, reloads: list[Reload]) -> None:
    files.write("a.yaml", source("a", "*/2 * * * * *") + "---\n" + REF_SOURCE.format(name="r"))
    await reloader.load()
    files.write("a.yaml", "kind: [")
    await settled(reloader)
    output = io.StringIO()
    for reload in reloads:
        report_reload(Console(output, color=False), reload)
    path = files.folder / "a.yaml"
    assert output.getvalue().splitlines() == [
        f"skipped  default/r ({path}:2): ref sinks need --sink in local mode",
        "added    default/a  */2 * * * * * UTC -> http://127.0.0.1:9/",
        f"invalid  {path}:1: yaml: line 1, column 8: expected the node content, "
        "but found '<stream end>' (while parsing a flow node)",
        f"kept     the last good version of {path} (2 sources)",
    ]
    colored = io.StringIO()
    report_reload(Console(colored, color=True), reloads[0])
    assert "\x1b[32;1madded   \x1b[0m" in colored.getvalue()
