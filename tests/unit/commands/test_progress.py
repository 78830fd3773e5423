"""Progress lines: on a terminal only, redrawn at most every interval, the last one left in place."""

from __future__ import annotations

import io

from consumer.commands.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_piped_output_gets_no_progress_at_all() -> None:
    out = io.StringIO()  # not a terminal
    progress = Progress("produce to t", out)
    progress.update(1000)
    progress.done(1000)
    assert out.getvalue() == ""


def test_a_terminal_sees_records_rate_and_elapsed_redrawn_at_most_every_interval() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress("produce to t", out, every_s=0.5, clock=clock, enabled=True)
    clock.now += 2.0
    progress.update(2000)
    clock.now += 0.1
    progress.update(2100)  # too soon after the last redraw
    clock.now += 0.9
    progress.done(3000)
    assert out.getvalue() == (
        "\rproduce to t: 2,000 records, 1,000/s, 2.0 s\rproduce to t: 3,000 records, 1,000/s, 3.0 s\n"
    )
