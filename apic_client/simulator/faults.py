"""Fault injection and request counters for tests: errors, latency, short tokens, 503 bursts, resets.

A `Faults` object may be changed while the simulator runs (tests flip knobs between steps); its one-shot
knobs (`fail_next`, `reset_next`) are consumed request by request under a lock.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field


@dataclass
class Faults:
    """What to break, and how.

    error_rate: share of API requests (0..1) answered with `error_status` instead of being processed.
    latency: seconds added before each request is handled.
    token_lifetime: ``refreshTimeoutSeconds`` given to new sessions (the APIC default is 600).
    max_lifetime: ``maximumLifetimeSeconds``; refreshes stop working after it.
    login_rate, login_burst: the login throttle per client address (aaaLogin and aaaRefresh per second).
    """

    error_rate: float = 0.0
    error_status: int = 503
    latency: float = 0.0
    token_lifetime: int = 600
    max_lifetime: int = 86400
    login_rate: float = 2.0
    login_burst: int = 10
    seed: int | None = None
    _fail: list[int] = field(default_factory=list, repr=False)
    _reset: list[bool] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _random: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if self.seed is not None:
            self._random.seed(self.seed)

    def fail_next(self, count: int, status: int = 503) -> None:
        """Answer the next `count` requests with `status` (and an error envelope) without processing them."""
        with self._lock:
            self._fail.extend([status] * count)

    def reset_next(self, count: int, *, after_commit: bool = False) -> None:
        """Reset the connection of the next `count` requests, before or after processing them."""
        with self._lock:
            self._reset.extend([after_commit] * count)

    def clear(self) -> None:
        with self._lock:
            self._fail.clear()
            self._reset.clear()
        self.error_rate = 0.0
        self.latency = 0.0

    def take_failure(self) -> int | None:
        """The status to fail this request with, if any."""
        with self._lock:
            if self._fail:
                return self._fail.pop(0)
            if self.error_rate > 0 and self._random.random() < self.error_rate:
                return self.error_status
        return None

    def take_reset(self) -> bool | None:
        """None: answer normally; False: reset before processing; True: reset after processing."""
        with self._lock:
            return self._reset.pop(0) if self._reset else None


@dataclass
class Counters:
    """What the simulator received; read them with `Simulator.counters`."""

    requests: int = 0
    gets: int = 0
    posts: int = 0
    deletes: int = 0
    logins: int = 0
    refreshes: int = 0
    logouts: int = 0
    injected_errors: int = 0
    resets: int = 0
    post_paths: list[str] = field(default_factory=list)
