"""What `mtping local` tells the person watching it: one line per news, a verb first.

    invalid  samples/ping.yaml:1: spec.schedule: invalid schedule '61 * * * *': ...
    kept     the last good version of samples/ping.yaml (1 source)
    skipped  default/ping (samples/ping.yaml:1): ref sinks need --sink in local mode
    added    default/ping  */2 * * * * * UTC -> http://127.0.0.1:8080/
    changed  default/ping  */5 * * * * * UTC -> http://127.0.0.1:8080/
    removed  default/ping

Formatting only: it decides nothing and never touches the registry.
"""

from __future__ import annotations

from mtping.console import Console, Style
from mtping.local.watching import Reload, Scheduled
from mtping.model import SourceKey

VERB_WIDTH = 8


def report_reload(console: Console, reload: Reload) -> None:
    for problem in reload.problems:
        _say(console, "invalid", Style.RED, str(problem))
    for path, count in reload.kept:
        _say(console, "kept", Style.YELLOW, f"the last good version of {path} ({_sources(count)})")
    for skipped in reload.skipped:
        source = skipped.source
        _say(
            console,
            "skipped",
            Style.YELLOW,
            f"{source.spec.key} ({source.origin}): {skipped.reason}",
        )
    for entry in reload.added:
        _say(console, "added", Style.GREEN, describe(console, entry))
    for entry in reload.changed:
        _say(console, "changed", Style.CYAN, describe(console, entry))
    for key in reload.removed:
        _say(console, "removed", Style.RED, _key(console, key))


def describe(console: Console, entry: Scheduled) -> str:
    schedule = entry.source.spec.schedule
    when = f"{schedule.expression} {schedule.timezone}"
    return f"{_key(console, entry.source.spec.key)}  {when} -> {entry.target.url}"


def summary(console: Console, *, sources: int, files: int, interval: float) -> None:
    console.line(
        console.paint(
            f"{_sources(sources)} scheduled from {files} file{'s' if files != 1 else ''}; "
            f"watching for changes every {interval:g}s (Ctrl-C to stop)",
            Style.DIM,
        )
    )


def _say(console: Console, verb: str, style: Style, text: str) -> None:
    console.line(f"{console.paint(verb.ljust(VERB_WIDTH), style, Style.BOLD)} {text}")


def _key(console: Console, key: SourceKey) -> str:
    return console.paint(str(key), Style.BOLD)


def _sources(count: int) -> str:
    return f"{count} source{'s' if count != 1 else ''}"
