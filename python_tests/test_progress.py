"""Progress bars: tqdm on a terminal, bounded plain lines (no carriage returns) anywhere else."""
import io

import pytest
from tqdm import tqdm

from lsmia_ext.progress import PlainProgress, progress_bar


class FakeClock:
    def __init__(self, step_s):
        self.t, self.step_s = 0.0, step_s

    def __call__(self):
        self.t += self.step_s
        return self.t


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_non_terminal_gets_plain_lines():
    out = io.StringIO()
    bar = progress_bar(range(50), desc="work", file=out)
    assert isinstance(bar, PlainProgress)
    assert list(bar) == list(range(50))
    text = out.getvalue()
    assert "\r" not in text
    assert text.splitlines()[-1].startswith("work: 50/50 (100%), ")  # the final line, written at close


def test_terminal_gets_tqdm():
    out = Terminal()
    bar = progress_bar(range(5), desc="work", file=out)
    assert isinstance(bar, tqdm)
    list(bar)
    assert "\r" in out.getvalue()


@pytest.mark.parametrize("seconds_per_step, max_lines", [
    (1.0, 100 / 5 + 1),      # slow steps: the percent gate bounds the lines
    (0.001, 10_000 * 0.001 / 5 + 1),  # fast steps: the time gate bounds them (10 s in all, a line per 5 s)
])
def test_line_count_is_bounded(seconds_per_step, max_lines):
    out = io.StringIO()
    bar = PlainProgress(total=10_000, desc="steps", file=out, clock=FakeClock(seconds_per_step))
    for _ in range(10_000):
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert 2 <= len(lines) <= max_lines
    assert lines[-1].startswith("steps: 10000/10000 (100%)")
    assert "\r" not in out.getvalue()


def test_resumed_bar_postfix_and_unknown_total():
    out = io.StringIO()
    bar = PlainProgress(total=100, initial=40, desc="train-prior", file=out, clock=FakeClock(10.0))
    bar.set_postfix(loss_d="0.123")
    bar.update(30)
    # 30 steps in 10 s since the resume: 30 to go take ~10 s (the 40 done before do not count)
    assert out.getvalue() == "train-prior: 70/100 (70%), 10 s, ~10 s left, loss_d=0.123\n"
    unknown = io.StringIO()
    bar = PlainProgress(iter(range(3)), file=unknown, clock=FakeClock(10.0))
    list(bar)
    assert unknown.getvalue().splitlines() == ["1, 10 s", "2, 20 s", "3, 30 s"]  # no total: per interval


def test_disabled_writes_nothing():
    for stream in (io.StringIO(), Terminal()):
        assert list(progress_bar(range(3), file=stream, disable=True)) == [0, 1, 2]
        assert stream.getvalue() == ""


def test_an_interrupted_plain_bar_writes_no_final_line():
    """An error inside the loop leaves only the error for the reader (a CLI prints one error line)."""
    import io

    from lsmia_ext.progress import PlainProgress

    def broken():
        yield 1
        raise ValueError("boom")

    out = io.StringIO()
    bar = PlainProgress(broken(), total=5, desc="epoch", file=out, min_interval_s=0.0, step_percent=100.0)
    try:
        for _ in bar:
            pass
    except ValueError:
        pass
    assert out.getvalue() == ""
