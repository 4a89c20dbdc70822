"""Kubernetes Events about invalid input, as client-go's EventCorrelator (tools/record) sends them:

- the same event again (same object, reason and message) patches the existing Event's `count` and
  `lastTimestamp` instead of creating another;
- more than `aggregate_max` different messages with one reason for one object within `aggregate_interval`
  become one Event "(combined from similar events): <latest message>", patched from then on;
- a token bucket per object (`burst` events, then `qps`) caps the writes one object can cause;
- messages are cut to 1024 bytes (the API server's limit for an Event note, `NoteLengthLimit`; kubectl shows
  no more), and what the correlator remembers is bounded: LRU caches of `cache_size` entries holding digests
  of messages, never the messages themselves.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from kubernetes import client as k8s

from controller.timing import SYSTEM, Clock
from controller.watch import describe_error, single_attempt

log = logging.getLogger("epgbridge.events")

MESSAGE_LIMIT = 1024  # bytes: the API server's NoteLengthLimit for Events
REQUEST_TIMEOUT = (5, 15)  # seconds to connect, to read: a lost API server must not stall the loop
COMBINED = "(combined from similar events): "
GROUP, VERSION = "epgbridge.io", "v1alpha1"
APPS_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet")


def truncate(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """At most `limit` bytes of UTF-8, ending in " ..." when cut (as the scheduler cuts its Event messages)."""
    data = message.encode()
    if len(data) <= limit:
        return message
    return data[:limit - 4].decode(errors="ignore") + " ..."


def digest(message: str) -> str:
    return hashlib.sha256(message.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class EventSettings:
    """client-go's defaults (NewEventCorrelator)."""

    cache_size: int = 4096  # entries in each LRU cache
    burst: int = 25  # writes per object before the refill rate applies
    qps: float = 1.0 / 300  # refill: one write per object every five minutes
    aggregate_max: int = 10  # different messages per object and reason before they are combined
    aggregate_interval: float = 600.0  # seconds: a quieter object starts counting again


K = TypeVar("K")
V = TypeVar("V")


class _Lru(Generic[K, V]):
    def __init__(self, size: int) -> None:
        self.size = size
        self._items: collections.OrderedDict[K, V] = collections.OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class _Aggregate:
    messages: set[str] = field(default_factory=set)  # digests, at most aggregate_max
    at: float = 0.0


@dataclass
class _Seen:
    name: str | None  # the Event's name on the server, once created
    count: int
    first: dt.datetime


@dataclass(frozen=True)
class Involved:
    """The object an Event is about."""

    kind: str
    namespace: str
    name: str
    uid: str | None = None

    @property
    def api_version(self) -> str:
        if self.kind in ("EndpointGroup", "Contract"):
            return f"{GROUP}/{VERSION}"
        return "apps/v1" if self.kind in APPS_KINDS else "v1"


@dataclass(frozen=True)
class Decision:
    """What to send for one event: nothing (`skip`), a new Event, or a patch of the Event named `name`."""

    skip: bool
    message: str = ""
    count: int = 1
    first: dt.datetime | None = None
    name: str | None = None  # patch this Event
    key: tuple[str, ...] = ()


class EventCorrelator:
    """Decides, per event, whether to create, patch or drop it (pure bookkeeping, no I/O)."""

    def __init__(self, component: str, settings: EventSettings | None = None, clock: Clock = SYSTEM) -> None:
        self.component = component
        self.settings = settings or EventSettings()
        self.clock = clock
        size = self.settings.cache_size
        self._buckets: _Lru[tuple[str, ...], _Bucket] = _Lru(size)
        self._aggregates: _Lru[tuple[str, ...], _Aggregate] = _Lru(size)
        self._seen: _Lru[tuple[str, ...], _Seen] = _Lru(size)

    def _object_key(self, obj: Involved) -> tuple[str, ...]:
        return (self.component, obj.kind, obj.namespace, obj.name, obj.uid or "", obj.api_version)

    def correlate(self, obj: Involved, kind: str, reason: str, message: str) -> Decision:
        s, now = self.settings, self.clock.monotonic()
        message = truncate(message)
        group = (*self._object_key(obj), kind, reason)
        # Aggregate: too many different messages for one object and reason become one combined Event.
        agg = self._aggregates.get(group)
        if agg is None or now - agg.at > s.aggregate_interval:
            agg = _Aggregate()
        agg.messages.add(digest(message))
        agg.at = now
        self._aggregates.put(group, agg)
        key = (*group, digest(message))
        if len(agg.messages) >= s.aggregate_max:
            agg.messages.pop()  # never grows past the threshold
            message, key = truncate(COMBINED + message), group
        # Count: the same event again patches the one already sent.
        seen = self._seen.get(key)
        wall = self.clock.now()
        if seen is None:
            seen = _Seen(None, 0, wall)
            self._seen.put(key, seen)
        seen.count += 1
        # Spam filter: a token bucket per object, refilled at qps.
        bucket_key = self._object_key(obj)
        bucket = self._buckets.get(bucket_key)
        if bucket is None:
            bucket = _Bucket(float(s.burst), now)
        bucket.tokens = min(float(s.burst), bucket.tokens + (now - bucket.at) * s.qps)
        bucket.at = now
        self._buckets.put(bucket_key, bucket)
        if bucket.tokens < 1:
            return Decision(skip=True, key=key)
        bucket.tokens -= 1
        return Decision(False, message, seen.count, seen.first, seen.name, key)

    def sent(self, key: tuple[str, ...], name: str) -> None:
        """The server's name for the Event of `key` (so the next occurrence patches it)."""
        seen = self._seen.get(key)
        if seen is not None:
            seen.name = name

    def forget(self, key: tuple[str, ...]) -> None:
        """The Event of `key` is gone from the server (expired): the next occurrence creates a new one."""
        seen = self._seen.get(key)
        if seen is not None:
            seen.name, seen.count, seen.first = None, 0, self.clock.now()

    def __len__(self) -> int:
        return len(self._seen) + len(self._aggregates) + len(self._buckets)


class EventRecorder:
    """Warning Events through the correlator, in the involved object's namespace ("default" for cluster-scoped
    objects, as kubectl looks for them)."""

    def __init__(self, api: k8s.ApiClient, component: str, *, settings: EventSettings | None = None,
                 clock: Clock = SYSTEM) -> None:
        self.core = k8s.CoreV1Api(single_attempt(api))
        self.component = component
        self.correlator = EventCorrelator(component, settings, clock)
        self.clock = clock
        self.written = 0  # creates and patches sent
        self.dropped = 0  # events the spam filter held back

    def warn(self, obj: Involved, reason: str, message: str) -> bool:
        """Record one Warning; False when the API server refused it (the caller may report it again)."""
        decision = self.correlator.correlate(obj, "Warning", reason, message)
        if decision.skip:
            self.dropped += 1
            return True
        ns = obj.namespace or "default"
        now = self.clock.now()
        try:
            if decision.name is not None:
                try:
                    self.core.patch_namespaced_event(decision.name, ns, {
                        "count": decision.count, "lastTimestamp": _rfc3339(now), "message": decision.message},
                        _request_timeout=REQUEST_TIMEOUT)
                    self.written += 1
                    return True
                except k8s.ApiException as exc:
                    if exc.status != 404:
                        raise
                    self.correlator.forget(decision.key)  # expired on the server: create it again
                    decision = Decision(False, decision.message, 1, now, None, decision.key)
            event = k8s.CoreV1Event(
                metadata=k8s.V1ObjectMeta(generate_name=f"{obj.name}.", namespace=ns),
                involved_object=k8s.V1ObjectReference(kind=obj.kind, namespace=obj.namespace or None, name=obj.name,
                                                      uid=obj.uid, api_version=obj.api_version),
                reason=reason, message=decision.message, type="Warning", count=decision.count,
                first_timestamp=decision.first or now, last_timestamp=now,
                source=k8s.V1EventSource(component=self.component), reporting_component=self.component,
                reporting_instance=self.component)
            created: Any = self.core.create_namespaced_event(ns, event, _request_timeout=REQUEST_TIMEOUT)
            self.written += 1
            self.correlator.sent(decision.key, created.metadata.name)
            return True
        except Exception as exc:  # refused, or the API server is not reachable
            log.warning("could not record event on %s %s/%s: %s", obj.kind, obj.namespace, obj.name,
                        describe_error(exc))
            return False


def _rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
