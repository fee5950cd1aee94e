"""The progress bar: drawn on a terminal only, after its delay, within the width, and erased."""

from __future__ import annotations

import io

import pytest

from pdinfer import progress as progress_module
from pdinfer.progress import Progress
from terminal import Terminal


def test_nothing_is_written_to_a_file_or_pipe():
    stream = io.StringIO()
    with Progress("run", 5, stream=stream, delay=0) as bar:
        for done in range(1, 6):
            bar(done)
    assert not bar.enabled and stream.getvalue() == ""


def test_a_closed_or_plain_stream_is_not_a_terminal():
    closed = io.StringIO()
    closed.close()  # its isatty() raises ValueError
    assert not Progress("x", 1, stream=closed).enabled
    assert not Progress("x", 1, stream=object()).enabled  # no isatty at all


def test_draws_on_a_terminal_and_clears_to_an_empty_line(monkeypatch):
    monkeypatch.setattr(progress_module, "REDRAW_INTERVAL", 0)
    term = Terminal()
    bar = Progress("golden", 4, stream=term, delay=0)
    bar(1)
    [line] = term.screen()
    assert line.startswith("golden [") and " 1/4 " in line
    inside = line[line.index("[") + 1:line.index("]")]
    assert inside == "#" * (len(inside) // 4) + "." * (len(inside) - len(inside) // 4)
    bar(4)
    assert " 4/4 " in term.screen()[0] and "." not in term.screen()[0].split("]")[0]
    bar.clear()
    assert term.screen() == [""] and term.getvalue().endswith("\r")
    bar.clear()  # clearing twice writes nothing more
    assert term.getvalue().count("\r") == 4


def test_nothing_is_drawn_before_the_delay():
    term = Terminal()
    bar = Progress("run", 3, stream=term, delay=60)
    bar(1)
    bar(3)
    bar.clear()
    assert term.getvalue() == ""


def test_redraws_are_throttled_but_the_last_step_always_draws(monkeypatch):
    monkeypatch.setattr(progress_module, "REDRAW_INTERVAL", 60)
    term = Terminal()
    bar = Progress("run", 100, stream=term, delay=0)
    for done in range(1, 101):
        bar(done)
    assert term.getvalue().count("\r") == 2 and " 100/100 " in term.screen()[0]


def test_the_total_can_come_with_each_call(monkeypatch):
    monkeypatch.setattr(progress_module, "REDRAW_INTERVAL", 0)
    term = Terminal()
    bar = Progress("golden", 0, stream=term, delay=0)
    bar(2, 7)
    assert " 2/7 " in term.screen()[0] and bar.total == 7


@pytest.mark.parametrize("columns", [0, 5, 20, 40, 200])
@pytest.mark.parametrize("done, total", [(0, 0), (0, 10), (3, 10), (10, 10), (11, 10), (12345, 99999)])
def test_render_fits_the_width_and_fills_in_proportion(columns, done, total):
    bar = Progress("warmup", total, stream=io.StringIO())
    text = bar.render(done, 1.25, columns)
    assert len(text) <= columns
    if columns >= 40:
        assert text.endswith(f" {done}/{total} 1.2 s") or text.endswith(f" {done}/{total} 1.3 s")
        inside = text[text.index("[") + 1:text.index("]")]
        assert set(inside) <= {"#", "."}
        expected = len(inside) * min(done, total) // total if total else len(inside)
        assert inside.count("#") == expected
