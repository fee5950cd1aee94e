"""A fake terminal for progress-bar tests: a text stream that says it is a TTY and can show the
screen it would leave (carriage returns overwrite the line, newlines end it)."""

from __future__ import annotations

import io


class Terminal(io.StringIO):
    """What a terminal shows after everything written to it (stdout and stderr may share one)."""

    def isatty(self) -> bool:
        return True

    def screen(self) -> list[str]:
        """The lines on screen, trailing spaces removed; the last one is the cursor's line."""
        lines, line, column = [], [], 0
        for char in self.getvalue():
            if char == "\n":
                lines.append("".join(line).rstrip())
                line, column = [], 0
            elif char == "\r":
                column = 0
            else:
                line[column:column + 1] = [char]
                column += 1
        return lines + ["".join(line).rstrip()]
