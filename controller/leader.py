"""Lease-based leader election (coordination.k8s.io/v1) by client-go's rules (tools/leaderelection):

- A standby judges a Lease expired by its own observation: the holder's record has not changed for
  `lease_duration` seconds of *this* replica's monotonic clock since it last saw it change. The holder's
  `renewTime` is never compared with our clock, so a replica whose clock is off cannot take a healthy Lease.
- The leader renews every `retry_period` and leads only while a renew has succeeded within `renew_deadline`
  (counted from when that request was sent). When that lapses it stops acting at once (`is_leader` turns
  False by the clock, even while a request hangs) and steps down; it leads again only by winning the Lease.
- Every Lease call carries a request timeout, so a partitioned replica's loop never hangs.
- `lease_duration > renew_deadline > 1.2 x retry_period` (as client-go checks): a leader cut off from the API
  server stops acting before any standby can consider its Lease expired, so two replicas never act at once
  (as long as the two clocks run at about the same rate; their offsets do not matter).
- A clean shutdown releases the Lease (holder emptied), so a standby takes over at its next attempt.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s

from controller.timing import SYSTEM, Backoff, BoundedFrequencyRunner, Clock, Deadline, Trigger
from controller.watch import describe_error, single_attempt

log = logging.getLogger("epgbridge.leader")

JITTER_FACTOR = 1.2  # client-go's leaderelection.JitterFactor


@dataclass(frozen=True, slots=True)
class LeaderElectionSettings:
    """The timing of leader election, with client-go's (and kube-controller-manager's) defaults."""

    lease_duration: float = 15.0  # a standby waits this long after the Lease last changed before taking it
    renew_deadline: float = 10.0  # the leader stops acting when no renew succeeded for this long
    retry_period: float = 2.0  # between attempts to acquire or renew
    request_timeout: float | None = None  # per Lease request; default renew_deadline / 2

    def validate(self) -> None:
        if min(self.lease_duration, self.renew_deadline, self.retry_period) <= 0:
            raise ValueError("leader election: lease duration, renew deadline and retry period must be positive")
        if self.lease_duration <= self.renew_deadline:
            raise ValueError(f"leader election: the lease duration ({self.lease_duration:g}s) must be longer than "
                             f"the renew deadline ({self.renew_deadline:g}s)")
        if self.renew_deadline <= JITTER_FACTOR * self.retry_period:
            raise ValueError(f"leader election: the renew deadline ({self.renew_deadline:g}s) must be longer than "
                             f"{JITTER_FACTOR:g} x the retry period ({self.retry_period:g}s)")
        if self.request_timeout is not None and not 0 < self.request_timeout < self.renew_deadline:
            raise ValueError("leader election: the request timeout must be positive and below the renew deadline")

    @property
    def timeout(self) -> float:
        return self.request_timeout if self.request_timeout is not None else self.renew_deadline / 2

    @property
    def lease_seconds(self) -> int:
        """What the Lease records (whole seconds, rounded up)."""
        return max(1, math.ceil(self.lease_duration))


def _record(spec: Any) -> tuple[Any, ...]:
    """What a change of the Lease is judged by (client-go compares the whole record)."""
    return (spec.holder_identity or "", spec.lease_duration_seconds, spec.renew_time, spec.acquire_time,
            spec.lease_transitions)


class LeaderElector:
    def __init__(self, api: k8s.ApiClient, namespace: str, name: str, identity: str, *,
                 settings: LeaderElectionSettings | None = None, clock: Clock = SYSTEM,
                 on_change: Callable[[bool], None] | None = None) -> None:
        self.settings = settings or LeaderElectionSettings()
        self.settings.validate()
        self.api = k8s.CoordinationV1Api(single_attempt(api))  # the request timeout bounds each attempt
        self.namespace, self.name, self.identity = namespace, name, identity
        self.clock = clock
        self.on_change = on_change
        self._holding = False  # our last acquire or renew succeeded and we have not stepped down since
        self._renewed = Deadline(clock, self.settings.renew_deadline)  # we may act until this lapses
        self._observed: tuple[Any, ...] | None = None  # the Lease record as we last saw it change
        self._expiry = Deadline(clock, self.settings.lease_duration)  # since we saw it change
        self._runner = BoundedFrequencyRunner(f"lease {namespace}/{name}", self._attempt, min_interval=0.0,
                                              period=self.settings.retry_period, backoff=Backoff(),
                                              clock=clock, first_periodic=0.0)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.transitions = 0
        self.last_error: str | None = None

    @property
    def is_leader(self) -> bool:
        """True only while a renew has succeeded within the renew deadline: checked against the clock at each
        call, so the answer turns False on time even while the election thread waits for the API server."""
        return self._holding and not self._renewed.lapsed

    def start(self) -> None:
        self._thread = threading.Thread(target=self._runner.loop, name="leader-election", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._runner.stop()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.timeout * 3)
        if self.is_leader:
            self._release()
        self._set(False, "shutting down")

    def _set(self, leading: bool, why: str) -> None:
        with self._lock:
            changed = leading != self._holding
            self._holding = leading
        if changed:
            level = logging.INFO if leading or why == "shutting down" else logging.WARNING
            log.log(level, "%s %s leadership of lease %s/%s (%s)", self.identity,
                    "acquired" if leading else "lost", self.namespace, self.name, why)
            if self.on_change is not None:
                self.on_change(leading)

    def _attempt(self, _trigger: Trigger) -> bool:
        try:
            won = self.try_acquire_or_renew()
            self.last_error = None
        except k8s.ApiException as exc:
            hint = f" (does namespace {self.namespace} exist?)" if exc.status == 404 else ""
            self.last_error = f"{exc.status} {exc.reason}{hint}"
            won = False
        except Exception as exc:  # a timeout, a refused connection: the API server is not reachable
            self.last_error = describe_error(exc)
            won = False
        if won:
            self._set(True, "acquired")
        elif self._holding and self._renewed.lapsed:
            self._set(False, f"no renew succeeded within {self.settings.renew_deadline:g}s"
                             + (f": {self.last_error}" if self.last_error else ""))
        elif self._holding and self._observed is not None and self._observed[0] != self.identity:
            self._set(False, f"the lease is held by {self._observed[0]}")
        if self.last_error and self._holding:
            log.warning("renewing lease %s/%s failed: %s; acting for %.1fs more unless a renew succeeds",
                        self.namespace, self.name, self.last_error, self._renewed.remaining)
        return True  # the retry period is the cadence, failed or not

    def _observe(self, spec: Any) -> None:
        record = _record(spec)
        if record != self._observed:
            self._observed = record
            self._expiry.seconds = float(spec.lease_duration_seconds or self.settings.lease_seconds)
            self._expiry.extend()

    def _spec(self, acquire: Any, transitions: int) -> k8s.V1LeaseSpec:
        now = self.clock.now()
        return k8s.V1LeaseSpec(holder_identity=self.identity, lease_duration_seconds=self.settings.lease_seconds,
                               acquire_time=acquire or now, renew_time=now, lease_transitions=transitions)

    def try_acquire_or_renew(self) -> bool:
        """One attempt (client-go's tryAcquireOrRenew): True when we hold the Lease now."""
        sent = self.clock.monotonic()  # the renew deadline counts from when the request went out
        timeout = self.settings.timeout
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace, _request_timeout=timeout)
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise
            spec = self._spec(None, 0)
            body = k8s.V1Lease(metadata=k8s.V1ObjectMeta(name=self.name, namespace=self.namespace), spec=spec)
            try:
                self.api.create_namespaced_lease(self.namespace, body, _request_timeout=timeout)
            except k8s.ApiException as exc2:
                if exc2.status == 409:
                    return False
                raise
            self._observe(spec)
            self._renewed.extend(at=sent)
            self.transitions += 1
            return True
        spec = lease.spec or k8s.V1LeaseSpec()
        self._observe(spec)
        holder = spec.holder_identity or ""
        if holder and holder != self.identity and not self._expiry.lapsed:
            return False
        mine = holder == self.identity
        lease.spec = self._spec(spec.acquire_time if mine else None,
                                (spec.lease_transitions or 0) + (0 if mine else 1))
        try:  # carries the resourceVersion we read: a replica that wrote meanwhile wins (409)
            self.api.replace_namespaced_lease(self.name, self.namespace, lease, _request_timeout=timeout)
        except k8s.ApiException as exc:
            if exc.status == 409:
                return False
            raise
        self._observe(lease.spec)
        self._renewed.extend(at=sent)
        if not mine:
            self.transitions += 1
        return True

    def _release(self) -> None:
        """Give the Lease up (client-go's ReleaseOnCancel): holder emptied, so a standby need not wait."""
        timeout = self.settings.timeout
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace, _request_timeout=timeout)
            if lease.spec is not None and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = ""
                lease.spec.lease_duration_seconds = 1
                lease.spec.renew_time = self.clock.now()
                self.api.replace_namespaced_lease(self.name, self.namespace, lease, _request_timeout=timeout)
        except Exception as exc:
            log.warning("could not release lease %s/%s: %s", self.namespace, self.name, describe_error(exc))
