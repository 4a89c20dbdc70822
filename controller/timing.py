"""Time for the long-running loops, in one place: a clock that tests replace (`FakeClock`), exponential backoff
with a cap and jitter (client-go's `wait.Backoff`), a deadline that is either met or lapsed (`Deadline`), and
the one loop that schedules work (`BoundedFrequencyRunner`, after kube-proxy's and kube-network-policies'
runner). The loops never compute a deadline by hand, and tests step a fake clock instead of sleeping."""

from __future__ import annotations

import datetime as dt
import enum
import logging
import random
import threading
import time
from collections.abc import Callable

log = logging.getLogger("epgbridge.timing")


class Clock:
    """The system's clocks: `monotonic` for intervals (never steps), `now` for timestamps others read (a Lease's
    renewTime), and `wait`, which a fake clock ends when its time passes the timeout."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Block until `event` is set or `timeout` seconds passed; True if the event is set."""
        return event.wait(max(0.0, timeout))


SYSTEM = Clock()


class FakeClock(Clock):
    """A clock that moves only when a test calls `advance`. `skew` shifts its wall time (`now`), as a node whose
    clock is wrong. Threads blocked in `wait` see the new time at once; `settle` lets a test wait until every
    such thread has acted on it and is waiting again, so a test needs no sleeps."""

    def __init__(self, *, start: dt.datetime | None = None, skew: float = 0.0) -> None:
        self._t = 0.0
        self._start = start or dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
        self.skew = skew
        self._cond = threading.Condition()
        self._waiting: dict[int, tuple[float, threading.Event]] = {}  # thread -> (time it last saw, its event)

    def monotonic(self) -> float:
        with self._cond:
            return self._t

    def now(self) -> dt.datetime:
        with self._cond:
            return self._start + dt.timedelta(seconds=self._t + self.skew)

    def wait(self, event: threading.Event, timeout: float) -> bool:
        me = threading.get_ident()
        with self._cond:
            deadline = self._t + max(0.0, timeout)
            try:
                while not event.is_set() and self._t < deadline:
                    self._waiting[me] = (self._t, event)
                    self._cond.notify_all()
                    # A short real wait: the event is set by threads that do not know this condition.
                    self._cond.wait(0.005)
            finally:
                self._waiting.pop(me, None)
                self._cond.notify_all()
        return event.is_set()

    def advance(self, seconds: float) -> None:
        with self._cond:
            self._t += seconds
            self._cond.notify_all()

    def settle(self, waiters: int, timeout: float = 10.0) -> None:
        """Block (in real time, at most `timeout`) until `waiters` threads wait on this clock and each has seen
        its current time and none has been woken: whatever the last `advance` or wake-up made due has run."""
        end = time.monotonic() + timeout
        with self._cond:
            while not (len(self._waiting) >= waiters
                       and all(t == self._t and not e.is_set() for t, e in self._waiting.values())):
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self._waiting)} of {waiters} threads wait on the fake clock")
                self._cond.wait(min(left, 0.01))


class Backoff:
    """Exponential backoff: `initial`, times `factor` after each failure, at most `cap`; each delay gets up to
    `jitter` x itself added at random (client-go's wait.Backoff, so replicas that failed together do not
    retry together). `reset` after a success."""

    def __init__(self, initial: float = 1.0, cap: float = 60.0, *, factor: float = 2.0, jitter: float = 0.2,
                 rand: Callable[[], float] = random.random) -> None:
        if not 0 < initial <= cap or factor < 1 or jitter < 0:
            raise ValueError("backoff needs 0 < initial <= cap, factor >= 1 and jitter >= 0")
        self.initial, self.cap, self.factor, self.jitter = initial, cap, factor, jitter
        self._rand = rand
        self._next = initial
        self.failures = 0

    def next(self) -> float:
        """The delay before the next attempt, after one more failure."""
        delay = self._next
        self._next = min(self._next * self.factor, self.cap)
        self.failures += 1
        return delay + self.jitter * delay * self._rand()

    def reset(self) -> None:
        self._next, self.failures = self.initial, 0


class Deadline:
    """A point in time on a clock that is either still ahead or has lapsed; `extend` moves it to `seconds`
    from now. Unset, it has lapsed."""

    def __init__(self, clock: Clock, seconds: float) -> None:
        self.clock, self.seconds = clock, seconds
        self._at: float | None = None

    def extend(self, at: float | None = None) -> None:
        """`seconds` from now, or from `at` (a monotonic time taken earlier, such as when a request was sent)."""
        self._at = (self.clock.monotonic() if at is None else at) + self.seconds

    def clear(self) -> None:
        self._at = None

    @property
    def lapsed(self) -> bool:
        return self._at is None or self.clock.monotonic() >= self._at

    @property
    def remaining(self) -> float:
        return 0.0 if self._at is None else max(0.0, self._at - self.clock.monotonic())


class Trigger(enum.Enum):
    """Why the runner calls its function."""

    REQUESTED = "requested"  # `run()` was called (something changed)
    PERIODIC = "periodic"  # `period` passed since the last periodic run (drift repair, full resync)
    RETRY = "retry"  # the last run failed and its backoff is over


class BoundedFrequencyRunner:
    """Calls `fn` in `loop`'s thread: soon after `run()` is requested, but at most once per `min_interval`
    (requests meanwhile coalesce into one run), and at least once per `period` (measured between periodic
    runs, so a steady stream of requests does not postpone them). When `fn` returns False the run failed: no
    run of any kind happens until `backoff` says, then one RETRY run does the work with what is current then.
    A periodic run that falls due at the same time as a request does both (its trigger is PERIODIC)."""

    def __init__(self, name: str, fn: Callable[[Trigger], bool], *, min_interval: float, period: float,
                 backoff: Backoff, clock: Clock = SYSTEM, first_periodic: float | None = None) -> None:
        if min_interval < 0 or period <= 0:
            raise ValueError(f"{name}: min_interval must be >= 0 and period > 0")
        self.name, self.fn, self.clock, self.backoff = name, fn, clock, backoff
        self.min_interval, self.period = min_interval, period
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._requested = False
        self._last_run: float | None = None
        self._next_periodic = clock.monotonic() + (period if first_periodic is None else first_periodic)
        self._retry_at: float | None = None
        self.runs = 0

    def run(self) -> None:
        """Ask for a run (cheap, from any thread)."""
        with self._lock:
            self._requested = True
        self._wake.set()

    def stop(self) -> None:
        """End `loop` after the run in progress, if any."""
        self._stop.set()
        self._wake.set()

    @property
    def backing_off(self) -> bool:
        return self._retry_at is not None

    def _due(self, now: float) -> tuple[Trigger | None, float]:
        """What is due now, else how long until something may be."""
        with self._lock:
            earliest = now if self._last_run is None else self._last_run + self.min_interval
            if self._retry_at is not None:
                at = max(self._retry_at, earliest)
                if now >= at:
                    return (Trigger.PERIODIC if now >= self._next_periodic else Trigger.RETRY), 0.0
                return None, at - now
            if now >= self._next_periodic and now >= earliest:
                return Trigger.PERIODIC, 0.0
            if self._requested and now >= earliest:
                return Trigger.REQUESTED, 0.0
            until = self._next_periodic - now
            if self._requested:
                until = min(until, earliest - now)
            return None, max(until, 0.0)

    def loop(self) -> None:
        """Run until `stop()` (between runs: `fn` itself is never interrupted)."""
        while not self._stop.is_set():
            now = self.clock.monotonic()
            trigger, wait = self._due(now)
            if trigger is None:
                self._wake.clear()
                if self._requested:  # a request that raced with clear: look again
                    trigger, wait = self._due(self.clock.monotonic())
                if trigger is None:
                    self.clock.wait(self._wake, wait)
                    continue
            with self._lock:
                self._requested = False
                self._last_run = now
                if trigger is Trigger.PERIODIC:
                    self._next_periodic = now + self.period
            self.runs += 1
            try:
                ok = self.fn(trigger)
            except Exception:
                log.exception("%s: unexpected error; retrying after a backoff", self.name)
                ok = False
            with self._lock:
                if ok:
                    self._retry_at = None
                    self.backoff.reset()
                else:
                    delay = self.backoff.next()
                    self._retry_at = self.clock.monotonic() + delay
            if not ok:
                log.warning("%s: %d failure%s in a row; next attempt in %.1fs", self.name, self.backoff.failures,
                            "" if self.backoff.failures == 1 else "s", delay)
