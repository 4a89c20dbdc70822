"""The long-running loops: the controller (one active replica: APIC sync, Events, status conditions) and the
node agent (its node's nftables ruleset). Both read the same cluster cache and build the same model; all
decisions come from the core."""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import json
import logging
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s

from annotations.resolve import Notice
from contracts.engine import Engine
from contracts.loader import Document, ParseCache, Rejected, load_cluster, load_cluster_lenient, patch_pods
from contracts.model import Model
from controller.leader import LeaderElector
from controller.metrics import Metrics
from controller.watch import ClusterCache
from dataplane.apply import NodeDataplane
from dataplane.render import TABLE

log = logging.getLogger("epgbridge")

GROUP, VERSION = "epgbridge.io", "v1alpha1"
PLURALS = {"EndpointGroup": "endpointgroups", "Contract": "contracts"}
NOTICE_KINDS = {"pod": "Pod", "namespace": "Namespace", "deployment": "Deployment", "statefulset": "StatefulSet",
                "daemonset": "DaemonSet", "replicaset": "ReplicaSet"}


class Incremental:
    """What one loop keeps between rebuilds: parsed objects and the last model, so that a change costs
    roughly what it touches (unchanged objects are not parsed again, unchanged pods are not placed again)."""

    def __init__(self) -> None:
        self.parsed = ParseCache()
        self.model: Model | None = None
        self.version: int | None = None  # the cache version the model was built from
        self.rejected: tuple[Rejected, ...] = ()


def settle_heap() -> None:
    """Collect, then move every object alive now out of the collector's sight (gc.freeze): the cluster's model
    is a large, long-lived heap, and a full collection walking it costs a few hundred milliseconds on whichever
    event it happens to land. Objects still die by reference counting; later garbage is collected as usual."""
    gc.collect()
    gc.freeze()


def build_model(cache: ClusterCache, config: tuple[Document, ...] = (),
                state: Incremental | None = None) -> tuple[Model, tuple[Rejected, ...]]:
    """The model of the cluster as cached, with the `--config` document (a `kind: Config` object) if any."""
    cluster, rejected = load_cluster_lenient([*config, *cache.documents()], state.parsed if state else None)
    model = Model(cluster, state.model if state else None)
    if state is not None:
        state.model = model
    return model, rejected


def update_model(cache: ClusterCache, config: tuple[Document, ...], state: Incremental
                 ) -> tuple[Model, tuple[Rejected, ...]]:
    """`build_model`, but when only pods changed since the last model, that model patched: only the changed
    pods are parsed and placed (the agent's path from a pod event to its rules)."""
    if state.model is not None and state.version is not None:
        version, changed = cache.changes(state.version)
        if changed == {}:
            return state.model, state.rejected
        if changed is not None and all(kind == "Pod" for kind, _, _ in changed):
            patched = patch_pods(state.model.cluster, state.rejected,
                                 {(ns, name): doc for (_, ns, name), doc in changed.items()})
            if patched is not None:
                cluster, gone, fresh = patched
                state.model, state.version = Model.with_pods(state.model, cluster, gone, fresh), version
                return state.model, state.rejected
    version = cache.version  # before reading: a change that lands meanwhile is read again next time
    model, rejected = build_model(cache, config, state)
    state.version, state.rejected = version, rejected
    return model, rejected


def read_config(path: str | None) -> tuple[Document, ...]:
    """The `kind: Config` object of a file (the ConfigMap's config.yaml), checked now so a bad file stops the
    process at start with one line, not later."""
    if path is None:
        return ()
    from controller.snapshot import read_documents
    from epg.errors import EpgbridgeError

    docs = read_documents([path])
    if [d.body.get("kind") for d in docs if isinstance(d.body, dict)] != ["Config"]:
        raise EpgbridgeError(f"{path}: expected exactly one epgbridge.io/v1alpha1 Config object")
    load_cluster(docs)
    return tuple(docs)


@dataclass
class ApicTarget:
    urls: list[str]
    username: str
    password: str = field(repr=False)
    ca_file: str | None = None
    insecure: bool = False
    host_protection: bool = False
    retries: int = 5  # per request, inside the session; the controller retries whole syncs with its own backoff
    backoff: float = 0.5


class EventRecorder:
    """Kubernetes Events for invalid input, one per distinct (object, message), as Warning."""

    def __init__(self, api: k8s.ApiClient, component: str) -> None:
        self.core = k8s.CoreV1Api(api)
        self.component = component
        self._sent: set[tuple[str, str, str, str]] = set()

    def warn(self, kind: str, namespace: str, name: str, uid: str | None, reason: str, message: str) -> None:
        key = (kind, namespace, name, message)
        if key in self._sent:
            return
        now = dt.datetime.now(dt.UTC)
        ns = namespace or "default"
        api_version = f"{GROUP}/{VERSION}" if kind in PLURALS else ("apps/v1" if kind in (
            "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet") else "v1")
        event = k8s.CoreV1Event(
            metadata=k8s.V1ObjectMeta(generate_name=f"{name}.", namespace=ns),
            involved_object=k8s.V1ObjectReference(kind=kind, namespace=namespace or None, name=name, uid=uid,
                                                  api_version=api_version),
            reason=reason, message=message[:1024], type="Warning", count=1,
            first_timestamp=now, last_timestamp=now, source=k8s.V1EventSource(component=self.component),
            reporting_component=self.component, reporting_instance=self.component)
        try:
            self.core.create_namespaced_event(ns, event)
            self._sent.add(key)
        except k8s.ApiException as exc:
            log.warning("could not record event on %s %s/%s: %s", kind, namespace, name, exc.reason)


def _notice_object(n: Notice) -> tuple[str, str, str] | None:
    word, _, rest = n.obj.partition(" ")
    kind = NOTICE_KINDS.get(word)
    if kind is None:
        return None
    ns, _, name = rest.partition("/") if kind != "Namespace" else ("", "", rest)
    return kind, ns, name


class Controller:
    """Keeps the APIC equal to the cluster (on start, on change, periodically to repair drift), and reports
    invalid input as Events and status conditions. Only the leader writes."""

    def __init__(self, api: k8s.ApiClient, apic: ApicTarget | None, *, identity: str, namespace: str,
                 lease_name: str = "epgbridge-controller", resync: float = 60.0, debounce: float = 0.2,
                 metrics: Metrics | None = None, lease_seconds: int = 15, renew_every: float = 5.0,
                 config: tuple[Document, ...] = ()) -> None:
        self.api, self.apic, self.config = api, apic, config
        self.state = Incremental()
        self.cache = ClusterCache(api)
        self.metrics = metrics or Metrics()
        self.elector = LeaderElector(api, namespace, lease_name, identity, lease_seconds=lease_seconds,
                                     renew_every=renew_every, on_change=self._leadership)
        self.events = EventRecorder(api, "epgbridge-controller")
        self.custom = k8s.CustomObjectsApi(api)
        self.resync, self.debounce = resync, debounce
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._session: Any = None
        self._last_synced: str | None = None
        self._retry_at = 0.0
        self._backoff = 1.0
        self.last_error: str | None = None
        self.alive = False
        m = self.metrics
        m.describe("sync_duration_seconds", "summary", "APIC sync duration")
        m.describe("apic_requests_total", "counter", "requests sent to the APIC")
        m.describe("apic_posts_total", "counter", "writes (POSTs) sent to the APIC")
        m.describe("api_errors_total", "counter", "errors talking to the APIC or the Kubernetes API")
        m.describe("objects_owned", "gauge", "APIC objects epgbridge owns (desired)")
        m.describe("invalid_objects", "gauge", "objects left out as invalid")
        m.describe("leader", "gauge", "1 while this replica leads")
        m.describe("apic_objects_not_owned", "gauge", "APIC objects epgbridge wants but finds owned by another tool")
        self.not_owned: dict[tuple[str, str], str] = {}  # (kind, name) -> why its APIC objects are not written

    def _leadership(self, leading: bool) -> None:
        self.metrics.set("leader", 1.0 if leading else 0.0)
        self._last_synced = None  # a new leader repairs everything once
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def healthy(self) -> bool:
        return self.alive and self.cache.synced

    def run(self) -> None:
        self.cache.start()
        self.cache.wait_synced(60)
        self.elector.start()
        self.alive = True
        seen, next_resync = -1, time.monotonic()
        try:
            while not self._stop.is_set():
                wait = max(0.0, min(next_resync, self._retry_at or next_resync) - time.monotonic())
                version = self.cache.wait_change(seen, min(wait, 1.0)) if not self._wake.is_set() else seen
                self._wake.clear()
                due = time.monotonic() >= next_resync or (self._retry_at and time.monotonic() >= self._retry_at)
                if version == seen and not due and self._last_synced is not None:
                    continue
                self._stop.wait(self.debounce)
                seen = self.cache.version
                forced = bool(due)
                periodic = time.monotonic() >= next_resync
                if periodic:
                    next_resync = time.monotonic() + self.resync
                self.reconcile(force=forced)
                if periodic:  # the first pass and each periodic resync
                    settle_heap()
        finally:
            self.elector.stop()
            self.cache.stop()
            if self._session is not None:
                self._session.close()

    def reconcile(self, force: bool = False) -> None:
        if not self.elector.is_leader:
            return  # a standby replica keeps its cache warm and nothing else
        model, rejected = build_model(self.cache, self.config, self.state)
        self.metrics.set("invalid_objects", float(len(rejected) + len(model.errors)))
        for r in rejected:
            obj = self.cache.get(r.kind, r.namespace, r.name) or {}
            self.events.warn(r.kind, r.namespace, r.name, (obj.get("metadata") or {}).get("uid"),
                             f"Invalid{r.kind}", r.problem.message)
        for n in model.errors:
            target = _notice_object(n)
            if target is not None:
                obj = self.cache.get(*target) or {}
                self.events.warn(*target, (obj.get("metadata") or {}).get("uid"), "InvalidEPGAnnotation",
                                 str(n))
        synced_ok = self._sync_apic(model, force)
        self._update_status(rejected, synced_ok)

    def _sync_apic(self, model: Model, force: bool) -> bool | None:
        if self.apic is None:
            return None
        from apic_client import ApicError, ApicSession, apply, plan, render

        try:
            desired = list(render(model, host_protection=self.apic.host_protection).tenants)
        except Exception as exc:
            log.error("cannot render the APIC objects: %s", exc)
            return False
        digest = hashlib.sha256(json.dumps(desired, sort_keys=True).encode()).hexdigest()
        if digest == self._last_synced and not force:
            return True
        if self._retry_at and time.monotonic() < self._retry_at and not force:
            return False
        started = time.monotonic()
        try:
            if self._session is None:
                a = self.apic
                self._session = ApicSession(a.urls, a.username, a.password, ca_file=a.ca_file, insecure=a.insecure,
                                            retries=a.retries, backoff=a.backoff)
            before = self._session.counters.requests
            p = plan(desired, self._session)
            written = apply(p, self._session) if not p.is_empty else 0
            self._report_not_owned(model, p)
            self.metrics.inc("apic_requests_total", float(self._session.counters.requests - before))
            self.metrics.inc("apic_posts_total", float(written))
            self.metrics.set("objects_owned", float(sum(_count(t) for t in desired)))
            self.metrics.observe("sync_duration_seconds", time.monotonic() - started)
            if written:
                log.info("APIC sync: %s", p.summary() if hasattr(p, "summary") else f"{written} POST(s)")
            self._last_synced, self._retry_at, self._backoff, self.last_error = digest, 0.0, 1.0, None
            return True
        except ApicError as exc:
            self.metrics.inc("api_errors_total", target="apic")
            self.last_error = str(exc)
            self._retry_at = time.monotonic() + self._backoff
            log.warning("APIC sync failed (%s); nodes keep enforcing; retrying in %.0fs", exc, self._backoff)
            self._backoff = min(self._backoff * 2, 60.0)
            return False

    def _report_not_owned(self, model: Model, p: Any) -> None:
        from apic_client.sync import not_owned_by_object

        self.metrics.set("apic_objects_not_owned", float(len(p.not_owned)))
        for warning in p.warnings:
            log.warning("APIC: %s", warning)
        self.not_owned = not_owned_by_object(model, p.not_owned)

    def _update_status(self, rejected: tuple[Rejected, ...], synced: bool | None) -> None:
        bad = {(r.kind, r.name): r.problem.message for r in rejected}
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for kind, plural in PLURALS.items():
            for body in self.cache.objects(kind):
                meta = body.get("metadata") or {}
                name, generation = meta.get("name", ""), meta.get("generation")
                problem = bad.get((kind, name))
                conditions = [_condition("Valid", problem is None, "Invalid" if problem else "Valid",
                                         problem or "accepted", generation, now)]
                if synced is not None:
                    foreign = self.not_owned.get((kind, name)) if synced and problem is None else None
                    ok = synced and problem is None and foreign is None
                    conditions.append(_condition("Synced", ok, "Synced" if ok else "NotOwned" if foreign
                                                 else "NotSynced",
                                                 "in sync with the APIC" if ok else (foreign or problem or
                                                                                     self.last_error or
                                                                                     "APIC sync failed"),
                                                 generation, now))
                status = body.get("status") or {}
                if _same(status.get("conditions") or [], conditions) and status.get("observedGeneration") == generation:
                    continue
                old = {c["type"]: c for c in status.get("conditions") or []}
                for c in conditions:  # keep the transition time of conditions whose status did not change
                    prev = old.get(c["type"])
                    if prev and prev.get("status") == c["status"]:
                        c["lastTransitionTime"] = prev.get("lastTransitionTime", now)
                try:
                    self.custom.patch_cluster_custom_object_status(
                        GROUP, VERSION, plural, name,
                        {"status": {"observedGeneration": generation, "conditions": conditions}})
                except k8s.ApiException as exc:
                    self.metrics.inc("api_errors_total", target="kubernetes")
                    log.warning("could not update status of %s %s: %s", kind, name, exc.reason)


def _condition(kind: str, ok: bool, reason: str, message: str, generation: Any, now: str) -> dict[str, Any]:
    return {"type": kind, "status": "True" if ok else "False", "reason": reason, "message": message[:1024],
            "observedGeneration": generation, "lastTransitionTime": now}


def _same(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> bool:
    def strip(cs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted((c.get("type"), c.get("status"), c.get("reason"), c.get("message"),
                       c.get("observedGeneration")) for c in cs)
    return strip(old) == strip(new)


def _count(tree: dict[str, Any]) -> int:
    (body,) = tree.values()
    return 1 + sum(_count(c) for c in body.get("children") or [])


class Agent:
    """Applies its node's ruleset from the cluster cache, incrementally, and repairs a hand-edited table."""

    def __init__(self, api: k8s.ApiClient, node: str, *, netns: str | None = None, debounce: float = 0.02,
                 drift_every: float = 30.0, metrics: Metrics | None = None,
                 lister: Callable[[str | None], str] | None = None, config: tuple[Document, ...] = ()) -> None:
        self.node, self.netns, self.config = node, netns, config
        self.state = Incremental()
        self.cache = ClusterCache(api)
        self.dataplane = NodeDataplane(node, netns=netns)
        self._engine: Engine | None = None
        self.metrics = metrics or Metrics()
        self.debounce, self.drift_every = debounce, drift_every
        self._list = lister or _list_table
        self._baseline: str | None = None
        self._stop = threading.Event()
        self.alive = False
        self.applied_version = -1
        self.last_error: str | None = None
        m = self.metrics
        m.describe("apply_duration_seconds", "summary", "time to compute and apply the node's ruleset")
        m.describe("stage_model_seconds", "summary", "of which: cluster cache to model")
        m.describe("stage_compile_seconds", "summary", "of which: model to the node's policy IR")
        m.describe("stage_nft_seconds", "summary", "of which: render, diff and the nft transaction")
        m.describe("set_elements", "gauge", "elements in the node's nftables sets")
        m.describe("applies_total", "counter", "ruleset transactions by kind (replace, delta)")
        m.describe("drift_repairs_total", "counter", "hand-edited tables put back")
        m.describe("apply_errors_total", "counter", "transactions nft refused")

    def stop(self) -> None:
        self._stop.set()

    def healthy(self) -> bool:
        return self.alive and self.cache.synced and self.last_error is None

    def run(self) -> None:
        self.cache.start()
        self.cache.wait_synced(60)
        self.alive = True
        next_drift = time.monotonic() + self.drift_every
        try:
            while not self._stop.is_set():
                until_drift = max(0.0, min(1.0, next_drift - time.monotonic()))
                version = self.cache.wait_change(self.applied_version, until_drift)
                if version != self.applied_version:
                    self._stop.wait(self.debounce)
                    first = self.applied_version < 0
                    self.reconcile()
                    if first:
                        settle_heap()
                if time.monotonic() >= next_drift:
                    self.check_drift()
                    settle_heap()
                    next_drift = time.monotonic() + self.drift_every
        finally:
            self.cache.stop()

    def reconcile(self) -> None:
        """Bring the node's table to the cluster as cached (the first apply replaces the whole table, later ones
        change what changed)."""
        version = self.cache.version
        started = time.monotonic()
        model, _ = update_model(self.cache, self.config, self.state)
        modelled = time.monotonic()
        self._engine = Engine(model, self._engine)  # after a pod event: the last engine's groups, updated
        ir = self._engine.compile([self.node])
        compiled = time.monotonic()
        try:
            tx = self.dataplane.apply(ir)
        except Exception as exc:
            self.last_error = str(exc)
            self.metrics.inc("apply_errors_total")
            log.error("node %s: %s (the previous ruleset stays in force)", self.node, exc)
            return
        self.applied_version, self.last_error = version, None
        if tx.kind != "noop":
            self._baseline = None  # the next drift check takes the table as it is now
            self.metrics.inc("applies_total", kind=tx.kind)
        done = time.monotonic()
        self.metrics.observe("apply_duration_seconds", done - started)
        self.metrics.observe("stage_model_seconds", modelled - started)
        self.metrics.observe("stage_compile_seconds", compiled - modelled)
        self.metrics.observe("stage_nft_seconds", done - compiled)
        table = self.dataplane.table
        self.metrics.set("set_elements", float(table.elements if table is not None else 0))

    def check_drift(self) -> bool:
        """Compare the table with how it looked after our last apply; put it back if someone edited it."""
        try:
            digest = hashlib.sha256(self._list(self.netns).encode()).hexdigest()
        except Exception as exc:
            log.warning("node %s: drift check failed: %s", self.node, exc)
            return False
        if self._baseline is None:
            self._baseline = digest
            return False
        if digest == self._baseline:
            return False
        log.warning("node %s: table %s was changed outside epgbridge; restoring it", self.node, TABLE)
        self.metrics.inc("drift_repairs_total")
        self.dataplane.forget()
        self.reconcile()
        return True


def _list_table(netns: str | None) -> str:
    argv = ["nft", "list", "table", *TABLE.split()]
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    return proc.stdout if proc.returncode == 0 else f"missing: {proc.stderr.strip()}"
