"""Progress bars that stay readable in log files.

`progress_bar(...)` takes tqdm's usual arguments. On a terminal it is tqdm, as before. When the stream is
not a terminal (a stage's log file, a pipe, CI) tqdm's carriage-return redraws would pile up in the
file (147 KB for one bar of `make experiment`'s prior log), so a `PlainProgress` writes one plain line
instead, at most every `step_percent` percent of the total *and* at least `min_interval_s` seconds
after the previous line (every `min_interval_s` seconds when the total is unknown), plus one final
line at close. A bar of known total thus writes at most 100 / step_percent + 1 lines, never a '\\r'.

`disable=True` turns either kind off; `disable=None` (tqdm: "off when not a TTY") means plain lines
here, since those are what a log file can hold.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, Iterable, TextIO

from tqdm import tqdm

STEP_PERCENT = 5.0
MIN_INTERVAL_S = 5.0


def is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty is not None and isatty())
    except ValueError:  # closed stream
        return False


class PlainProgress:
    """The part of tqdm's interface the package uses (iterate, update, set_postfix, close), as lines."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None, desc: str = "",
                 initial: int = 0, file: TextIO | None = None, step_percent: float = STEP_PERCENT,
                 min_interval_s: float = MIN_INTERVAL_S, clock: Callable[[], float] = time.monotonic):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.total, self.desc, self.n, self.initial = iterable, total, desc, initial, initial
        self.file, self.step_percent, self.min_interval_s, self.clock = file, step_percent, min_interval_s, clock
        self.postfix = ""
        self.start = self.last_time = clock()
        self.last_n = initial
        self.closed = False

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        except BaseException:
            self.closed = True  # interrupted (an error, a break): no final line, the error is what matters
            raise
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is not None:
            self.closed = True
        self.close()

    def set_postfix(self, **kwargs) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in kwargs.items())

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self.last_time < self.min_interval_s:
            return
        if self.total and 100.0 * (self.n - self.last_n) / self.total < self.step_percent:
            return
        self._line(now)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.n != self.last_n:
            self._line(self.clock())

    def _line(self, now: float) -> None:
        elapsed = now - self.start
        parts = [f"{self.desc}: {self.n}" if self.desc else str(self.n)]
        if self.total:
            parts[0] += f"/{self.total} ({100.0 * self.n / self.total:.0f}%)"
        parts.append(f"{elapsed:.0f} s")
        done = self.n - self.initial  # ETA from this run's rate (a resumed bar starts at `initial`)
        if self.total and 0 < done and self.n < self.total:
            parts.append(f"~{elapsed / done * (self.total - self.n):.0f} s left")
        if self.postfix:
            parts.append(self.postfix)
        stream = self.file if self.file is not None else sys.stderr
        stream.write(", ".join(parts) + "\n")
        stream.flush()
        self.last_time, self.last_n = now, self.n


def progress_bar(iterable: Iterable | None = None, *, file: TextIO | None = None, disable: bool | None = False,
             **kwargs):
    """tqdm on a terminal, `PlainProgress` otherwise (see the module docstring)."""
    stream = file if file is not None else sys.stderr
    if disable or is_terminal(stream):
        return tqdm(iterable, file=file, disable=bool(disable), **kwargs)
    plain = {k: kwargs[k] for k in ("total", "desc", "initial") if k in kwargs}
    return PlainProgress(iterable, file=file, **plain)
