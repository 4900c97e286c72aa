"""Human output of the commands people run by hand: short lines, coloured only on a terminal.

Colour is ANSI escape codes, written only when the stream is a TTY and neither `NO_COLOR`
(https://no-color.org) is set nor `TERM=dumb`; piped or redirected output stays plain text, so
it can be grepped and diffed. No dependency: four escape codes do not justify one. This module
formats and writes text; it never decides what to say.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from typing import TextIO


class Style(StrEnum):
    """SGR parameters of the few styles in use."""

    BOLD = "1"
    DIM = "2"
    RED = "31"
    GREEN = "32"
    YELLOW = "33"
    CYAN = "36"


def wants_color(stream: TextIO, env: Mapping[str, str] = os.environ) -> bool:
    if env.get("NO_COLOR") or env.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Console:
    """Writes whole lines to one stream, flushed at once (the reader may be a pipe)."""

    def __init__(self, stream: TextIO, *, color: bool | None = None) -> None:
        self.stream = stream
        self.color = wants_color(stream) if color is None else color

    def paint(self, text: str, *styles: Style) -> str:
        if not self.color or not styles:
            return text
        return f"\x1b[{';'.join(styles)}m{text}\x1b[0m"

    def line(self, text: str = "") -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
