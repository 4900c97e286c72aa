"""`mtping validate` and `mtping next`: offline answers about files and schedules.

Both use the very code the engine uses (`parse_source`, `parse_schedule` and its DST rule), so
what `validate` accepts is what gets scheduled and `next` prints the instants that will fire.
They read files and the clock and write lines; no engine, no network, no asyncio.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from mtping.console import Console, Style
from mtping.local.loading import LocalSource, Problem, find_files, load_file
from mtping.model import Limits, SourceKey, parse_source
from mtping.schedule import CronSchedule, ScheduleError, parse_schedule


def validate(paths: Sequence[Path], *, default_timezone: str, out: TextIO, err: TextIO) -> int:
    """One line per problem on `out`, a summary on `err`; 0 if all valid, 1 if not, 2 if a
    PATH does not exist."""
    console, notes = Console(out), Console(err)
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        notes.line(f"mtping validate: no such file or folder: {', '.join(missing)}")
        return 2
    parse = partial(parse_source, default_timezone=default_timezone, limits=Limits())
    files = find_files(paths)
    problems: list[Problem] = []
    sources: list[LocalSource] = []
    for path in files:
        load = load_file(path, parse=parse)
        problems.extend(load.problems)
        sources.extend(load.sources)
    problems.extend(_duplicates(sources))
    for problem in problems:
        console.line(_problem_line(console, problem))
    _summary(notes, problems=problems, sources=len(sources), files=len(files))
    return 1 if problems else 0


def _duplicates(sources: list[LocalSource]) -> list[Problem]:
    first: dict[SourceKey, LocalSource] = {}
    problems = []
    for source in sources:
        key = source.spec.key
        if key in first:
            reason = f"{key} is also defined in {first[key].origin}"
            problems.append(Problem(source.origin, "metadata.name", reason))
        else:
            first[key] = source
    return problems


def _problem_line(console: Console, problem: Problem) -> str:
    where = console.paint(str(problem.origin), Style.BOLD)
    field = console.paint(problem.origin.qualify(problem.field), Style.RED)
    return f"{where}: {field}: {problem.reason}"


def _summary(console: Console, *, problems: list[Problem], sources: int, files: int) -> None:
    in_files = f"{files} file{'s' if files != 1 else ''}"
    if not problems:
        valid = f"{sources} valid PingSource{'s' if sources != 1 else ''}"
        console.line(f"{console.paint('ok', Style.GREEN, Style.BOLD)}: {valid} in {in_files}")
        return
    bad_files = len({problem.origin.path for problem in problems})
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    console.line(console.paint(f"{count} in {bad_files} of {in_files}", Style.RED, Style.BOLD))


def next_fires(
    expression: str,
    *,
    timezone: str | None,
    count: int,
    after: datetime | None,
    out: TextIO,
    err: TextIO,
) -> int:
    """The next `count` fire instants after `after` (default now), one RFC 3339 timestamp per
    line in the schedule's zone; 2 with the reason on `err` if the schedule is invalid."""
    try:
        schedule = parse_schedule(expression, timezone=timezone)
        instants = list(_fires(schedule, after=after or datetime.now(UTC), count=count))
    except ScheduleError as error:
        err.write(f"mtping next: {error}\n")
        return 2
    out.writelines(f"{instant.isoformat()}\n" for instant in instants)
    out.flush()
    return 0


def _fires(schedule: CronSchedule, *, after: datetime, count: int) -> Iterator[datetime]:
    zone = ZoneInfo(schedule.timezone)
    instant = after
    for _ in range(count):
        instant = schedule.next_after(instant)
        yield instant.astimezone(zone)
