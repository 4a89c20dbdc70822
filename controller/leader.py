"""Lease-based leader election (coordination.k8s.io/v1), as client-go's leaderelection does it: take the
Lease when it is free or expired, renew it well before it expires, and give it up on a clean shutdown so the
next replica takes over at once. Conflicts (409) mean someone else won the race."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable

from kubernetes import client as k8s

log = logging.getLogger("epgbridge.leader")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LeaderElector:
    def __init__(self, api: k8s.ApiClient, namespace: str, name: str, identity: str, *,
                 lease_seconds: int = 15, renew_every: float = 5.0,
                 on_change: Callable[[bool], None] | None = None) -> None:
        self.api = k8s.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_seconds, self.renew_every = lease_seconds, renew_every
        self.on_change = on_change
        self._leading = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.transitions = 0

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.is_leader:
            self._release()
        self._set(False)

    def _set(self, leading: bool) -> None:
        if leading != self.is_leader:
            (self._leading.set if leading else self._leading.clear)()
            log.info("%s %s leadership of lease %s/%s", self.identity, "acquired" if leading else "lost",
                     self.namespace, self.name)
            if self.on_change is not None:
                self.on_change(leading)

    def _spec(self, acquire: dt.datetime | None, transitions: int) -> k8s.V1LeaseSpec:
        now = _now()
        return k8s.V1LeaseSpec(holder_identity=self.identity, lease_duration_seconds=self.lease_seconds,
                               acquire_time=acquire or now, renew_time=now, lease_transitions=transitions)

    def try_acquire_or_renew(self) -> bool:
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise
            body = k8s.V1Lease(metadata=k8s.V1ObjectMeta(name=self.name, namespace=self.namespace),
                               spec=self._spec(None, 0))
            try:
                self.api.create_namespaced_lease(self.namespace, body)
                return True
            except k8s.ApiException as exc2:
                if exc2.status == 409:
                    return False
                raise
        spec = lease.spec or k8s.V1LeaseSpec()
        holder = spec.holder_identity or ""
        renewed = spec.renew_time
        expired = (renewed is None or not holder
                   or renewed + dt.timedelta(seconds=spec.lease_duration_seconds or self.lease_seconds) < _now())
        if holder != self.identity and not expired:
            return False
        transitions = (spec.lease_transitions or 0) + (0 if holder == self.identity else 1)
        acquire = spec.acquire_time if holder == self.identity else None
        lease.spec = self._spec(acquire, transitions)
        try:
            self.api.replace_namespaced_lease(self.name, self.namespace, lease)  # carries resourceVersion
        except k8s.ApiException as exc:
            if exc.status == 409:
                return False
            raise
        if holder != self.identity:
            self.transitions += 1
        return True

    def _release(self) -> None:
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec is not None and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = ""
                lease.spec.renew_time = _now() - dt.timedelta(seconds=self.lease_seconds + 1)
                self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except Exception as exc:
            log.warning("could not release lease %s/%s: %s", self.namespace, self.name, exc)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._set(self.try_acquire_or_renew())
            except k8s.ApiException as exc:
                hint = f" (does namespace {self.namespace} exist?)" if exc.status == 404 else ""
                log.warning("leader election on lease %s/%s: %s %s%s", self.namespace, self.name, exc.status,
                            exc.reason, hint)
                self._set(False)
            except Exception as exc:
                log.warning("leader election: %s", str(exc).splitlines()[0] if str(exc) else exc)
                self._set(False)
            self._stop.wait(self.renew_every if self.is_leader else self.renew_every / 2)
