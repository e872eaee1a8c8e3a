"""The progress display of a run on a terminal: click's progress bar, with rate and remaining time.

The runners report progress as ``progress(name, done, total)`` calls (``done``
experiments or units finished of ``total``, ``name`` the one running now);
``Bar`` turns those calls into one click progress bar per run. The CLI makes
one only when stderr is a terminal and ``-q`` is not given; the library never
draws anything.
"""

from __future__ import annotations

import time

import click


class Bar:
    """A ``progress(name, done, total)`` callback drawing a click progress bar on ``file``.

    A new bar starts when ``total`` changes or ``done`` goes back (the next spec
    file), or after ``close()`` (a line printed meanwhile), where the last one stood.
    """

    def __init__(self, label: str, file=None):
        self.label = label
        self.file = file if file is not None else click.get_text_stream("stderr")
        self.bar = None
        self.total = None
        self.done = 0
        self.started = 0.0

    def __call__(self, name: str, done: int, total: int) -> None:
        if total != self.total or done < self.done:  # the next run: its rate starts afresh
            self.close()
            self.total, self.done, self.started = total, 0, time.monotonic()
        if self.bar is None:  # the first call of a run, or the first after close()
            self.bar = click.progressbar(length=total, label=self.label, file=self.file, show_pos=True,
                                         show_eta=True, item_show_func=self.caption, width=24)
            self.bar.__enter__()
        self.done = done
        self.bar.update(done - self.bar.pos, name)

    def caption(self, name) -> str | None:
        """What follows the bar: the rate so far and the name running now."""
        if name is None:
            return None
        elapsed = time.monotonic() - self.started
        rate = f"{self.done / elapsed:.3g}/s" if self.done and elapsed > 0 else "-/s"
        return f"{rate} {name}".rstrip()

    def close(self) -> None:
        """End the bar's line (it stays on screen), so other text can follow; a later call draws it again."""
        if self.bar is not None:
            self.bar.render_finish()
            self.bar = None
