"""A dependency-free one-line progress bar for a terminal's stderr.

It draws only when its stream is a terminal (never into a file or a pipe) and only once the work
has run for `delay` seconds, so quick commands print nothing. Call `clear()` before writing
anything else to the terminal; a later update draws the bar again below it.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import Optional, TextIO

DELAY = 0.5  # seconds of work before the bar first appears (default of Progress's `delay`)
REDRAW_INTERVAL = 0.1  # seconds between redraws (the last step always draws)


class Progress:
    """`progress(done, total)` draws `label [#####.....] done/total elapsed` on a terminal."""

    def __init__(self, label: str, total: int, stream: Optional[TextIO] = None,
                 delay: Optional[float] = None) -> None:
        self.label = label
        self.total = total
        self.stream = sys.stderr if stream is None else stream
        self.enabled = _is_terminal(self.stream)
        self.delay = DELAY if delay is None else delay
        self.start = time.monotonic()
        self._drawn = 0  # characters of the bar on screen now
        self._last_draw = float("-inf")

    def __call__(self, done: int, total: Optional[int] = None) -> None:
        """Record `done` of `total` (default: the total given at construction) steps."""
        if total is not None:
            self.total = total
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.start < self.delay or (now - self._last_draw < REDRAW_INTERVAL and done < self.total):
            return
        self._last_draw = now
        line = self.render(done, now - self.start, shutil.get_terminal_size().columns - 1)
        self.stream.write("\r" + line + " " * max(0, self._drawn - len(line)))
        self.stream.flush()
        self._drawn = len(line)

    def show(self, done: int) -> None:
        """Draw `done` now, without waiting for the delay (on a terminal)."""
        self.delay, self._last_draw = 0.0, float("-inf")
        self(done)

    def render(self, done: int, elapsed: float, columns: int) -> str:
        """The bar's text, at most `columns` characters wide."""
        counts = f" {done}/{self.total} {elapsed:.1f} s"
        room = max(0, min(40, columns - len(self.label) - len(counts) - 3))
        filled = room * min(done, self.total) // self.total if self.total > 0 else room
        return f"{self.label} [{'#' * filled}{'.' * (room - filled)}]{counts}"[:max(0, columns)]

    def clear(self) -> None:
        """Erase the bar (if drawn) and leave the cursor at the start of its line."""
        if self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self.stream.flush()
            self._drawn = 0

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.clear()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
