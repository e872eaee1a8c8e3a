"""The terminal progress display: click's progress bar with position, rate and remaining time."""

import io

from gradrun import progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_bar_shows_position_rate_and_the_running_name(monkeypatch):
    clock = iter([100.0, 102.0, 104.0, 106.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    screen = Terminal()
    bar = progress.Bar("chain", file=screen)
    bar("first", 0, 4)  # starts at t=100
    bar("second", 2, 4)  # two done in 2 s: 1/s
    text = screen.getvalue()
    assert "chain" in text and "2/4" in text and "1/s second" in text
    bar.close()
    assert screen.getvalue().endswith("\n")


def test_a_new_total_or_a_count_going_back_starts_a_new_bar():
    screen = Terminal()
    bar = progress.Bar("units", file=screen)
    bar("a", 0, 2)
    bar("b", 1, 2)
    first = bar.bar
    bar("c", 0, 3)
    assert bar.bar is not first and bar.bar.length == 3 and bar.done == 0
    bar("d", 3, 3)
    assert bar.bar.pos == 3
    bar.close()
    assert bar.bar is None


def test_after_close_the_bar_is_drawn_again_where_it_stood(monkeypatch):
    clock = iter([10.0, 11.0, 12.0, 13.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    screen = Terminal()
    bar = progress.Bar("units", file=screen)
    bar("a", 0, 4)  # t=10
    bar("b", 2, 4)
    bar.close()  # "wrote ..." is printed here
    bar("c", 3, 4)  # a new line, same run: 3 done in the 2 s since t=10
    assert bar.bar.pos == 3 and screen.getvalue().rstrip().endswith("3/4  1.5/s c")


def test_nothing_is_drawn_off_a_terminal():
    off = io.StringIO()
    bar = progress.Bar("chain", file=off)
    bar("first", 0, 2)
    bar("", 2, 2)
    bar.close()
    assert "\r" not in off.getvalue() and "\x1b" not in off.getvalue()
