"""The timing of the loops (controller/timing.py) on a fake clock: no test here sleeps."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from controller.timing import Backoff, BoundedFrequencyRunner, Deadline, FakeClock, Trigger


def test_backoff_doubles_to_a_cap_with_jitter_and_resets() -> None:
    b = Backoff(1.0, 30.0, jitter=0.0)
    assert [b.next() for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    b.reset()
    assert b.next() == 1
    top = Backoff(1.0, 30.0, jitter=0.2, rand=lambda: 1.0)
    assert [top.next() for _ in range(6)] == pytest.approx([1.2, 2.4, 4.8, 9.6, 19.2, 36.0])
    with pytest.raises(ValueError):
        Backoff(0.0, 1.0)


def test_deadline_lapses_by_the_clock() -> None:
    clock = FakeClock()
    d = Deadline(clock, 10)
    assert d.lapsed  # never extended
    d.extend()
    clock.advance(9.9)
    assert not d.lapsed and d.remaining == pytest.approx(0.1)
    clock.advance(0.1)
    assert d.lapsed
    d.extend(at=clock.monotonic() - 5)  # counted from a moment that has passed
    assert d.remaining == pytest.approx(5)


class Recorder:
    """A runner on a fake clock that records (time, trigger) of each run; `fail` makes runs fail."""

    def __init__(self, clock: FakeClock, **kw: float) -> None:
        self.clock = clock
        self.runs: list[tuple[float, Trigger]] = []
        self.fail = False
        self.runner = BoundedFrequencyRunner("test", self.fn, backoff=Backoff(1.0, 8.0, jitter=0.0), clock=clock,
                                             **kw)  # type: ignore[arg-type]
        self.thread = threading.Thread(target=self.runner.loop, daemon=True)

    def fn(self, trigger: Trigger) -> bool:
        self.runs.append((self.clock.monotonic(), trigger))
        return not self.fail

    def step(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.clock.settle(1)

    def request(self) -> None:
        self.runner.run()
        self.clock.settle(1)


@pytest.fixture
def rec() -> Iterator[Recorder]:
    r = Recorder(FakeClock(), min_interval=1.0, period=10.0)
    r.thread.start()
    r.clock.settle(1)
    yield r
    r.runner.stop()
    r.thread.join(5)


def test_requests_coalesce_and_respect_the_min_interval(rec: Recorder) -> None:
    rec.request()
    assert rec.runs == [(0.0, Trigger.REQUESTED)]
    for _ in range(5):  # a burst within min_interval: one more run, at its end
        rec.runner.run()
    rec.clock.settle(1)
    assert len(rec.runs) == 1
    rec.step(0.5)
    assert len(rec.runs) == 1
    rec.step(0.5)
    assert rec.runs[1:] == [(1.0, Trigger.REQUESTED)]
    rec.step(5)
    assert len(rec.runs) == 2  # nothing asked, nothing due


def test_periodic_runs_come_on_time_whatever_the_requests(rec: Recorder) -> None:
    for _ in range(12):  # a request every second does not postpone the periodic run
        rec.request()
        rec.step(1)
    assert (10.0, Trigger.PERIODIC) in rec.runs
    assert [t for t, trig in rec.runs if trig is Trigger.PERIODIC] == [10.0]


def test_a_failed_run_holds_every_run_until_its_backoff_is_over(rec: Recorder) -> None:
    rec.fail = True
    rec.request()  # fails at 0: retries after 1, 2, 4, 8, 8 (the cap) seconds
    for _ in range(30):
        rec.runner.run()  # changes keep coming: they do not cut the backoff short
        rec.step(1)
    assert rec.runs == [(0, Trigger.REQUESTED), (1, Trigger.RETRY), (3, Trigger.RETRY), (7, Trigger.RETRY),
                        (15, Trigger.PERIODIC),  # due at 10, held by the backoff too
                        (23, Trigger.RETRY)]
    assert rec.runner.backing_off
    rec.fail = False
    rec.step(1)  # 31: the retry succeeds (and does the periodic work, due at 25), the backoff resets
    assert rec.runs[-1] == (31, Trigger.PERIODIC) and not rec.runner.backing_off
    rec.request()
    rec.step(1)
    assert rec.runs[-1] == (32, Trigger.REQUESTED)
    rec.fail = True
    rec.request()
    rec.step(1)  # a new failure starts from the initial delay again
    rec.step(1)
    assert [t for t, _ in rec.runs][-2:] == [33, 34]
