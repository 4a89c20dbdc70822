"""The long-running loops: the controller (one active replica: APIC sync, Events, status conditions) and the
node agent (its node's nftables ruleset). Both read the same cluster cache and build the same model; all
decisions come from the core."""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s

from annotations.resolve import Notice
from contracts.engine import Engine
from contracts.loader import Document, ParseCache, Rejected, load_cluster, load_cluster_lenient, patch_pods
from contracts.model import Model
from controller.events import REQUEST_TIMEOUT, EventRecorder, EventSettings, Involved, digest, truncate
from controller.leader import LeaderElectionSettings, LeaderElector
from controller.metrics import Metrics
from controller.timing import SYSTEM, Backoff, BoundedFrequencyRunner, Clock, Trigger
from controller.watch import KINDS, ClusterCache, describe_error, node_kind, single_attempt
from dataplane.apply import NodeDataplane
from dataplane.drops import DropWatcher
from dataplane.render import TABLE, Table

log = logging.getLogger("epgbridge")

GROUP, VERSION = "epgbridge.io", "v1alpha1"
PLURALS = {"EndpointGroup": "endpointgroups", "Contract": "contracts"}
NOTICE_KINDS = {"pod": "Pod", "namespace": "Namespace", "deployment": "Deployment", "statefulset": "StatefulSet",
                "daemonset": "DaemonSet", "replicaset": "ReplicaSet", "NetworkPolicy": "NetworkPolicy"}


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


def _notice_object(n: Notice) -> tuple[str, str, str] | None:
    word, _, rest = n.obj.partition(" ")
    kind = NOTICE_KINDS.get(word)
    if kind is None:
        return None
    ns, _, name = rest.partition("/") if kind != "Namespace" else ("", "", rest)
    return kind, ns, name


_UNSET: Any = object()


class _LeaderOnly:
    """The APIC session as the sync sees it: every write first checks that this replica still leads, so a
    leader whose Lease lapsed mid-sync stops writing at the next POST."""

    def __init__(self, session: Any, elector: LeaderElector) -> None:
        self._session, self._elector = session, elector

    def get(self, path: str, params: Any = None) -> Any:
        return self._session.get(path, params)

    def post(self, path: str, payload: Any) -> Any:
        from apic_client import ApicError

        if not self._elector.is_leader:
            raise ApicError("stopped writing: this replica no longer leads (its Lease was not renewed in time)")
        return self._session.post(path, payload)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


class Controller:
    """Keeps the APIC equal to the cluster (on start, on change, periodically to repair drift), and reports
    invalid input as Events and status conditions. Only the leader writes, and only from a cache in which every
    kind has synced (else the APIC is left exactly as it is, and the hold is reported)."""

    def __init__(self, api: k8s.ApiClient, apic: ApicTarget | None, *, identity: str, namespace: str,
                 lease_name: str = "epgbridge-controller", resync: float = 60.0, debounce: float = 0.2,
                 metrics: Metrics | None = None, election: LeaderElectionSettings | None = None,
                 config: tuple[Document, ...] = (), clock: Clock = SYSTEM, backoff: Backoff | None = None,
                 events: EventSettings | None = None) -> None:
        self.api, self.apic, self.config, self.clock = api, apic, config, clock
        self.state = Incremental()
        self.metrics = metrics or Metrics()
        self.cache = ClusterCache(api, clock=clock, metrics=self.metrics)
        self.elector = LeaderElector(api, namespace, lease_name, identity, settings=election, clock=clock,
                                     on_change=self._leadership)
        self.events = EventRecorder(api, "epgbridge-controller", settings=events, clock=clock)
        self.custom = k8s.CustomObjectsApi(single_attempt(api))
        # A failed APIC sync is retried after 1, 2, 4 ... at most 60 s (plus jitter); nothing runs meanwhile.
        self.runner = BoundedFrequencyRunner("controller", self._pass, min_interval=debounce, period=resync,
                                             backoff=backoff or Backoff(1.0, 60.0), clock=clock, first_periodic=0.0)
        self.cache.on_change.append(self.runner.run)
        self._session: Any = None
        self._last_synced: str | None = None
        self._reported: set[tuple[str, str, str, str, str]] = set()  # problems reported as Events, by digest
        self._held: str | None = None  # why the last pass did not sync (the cache), as logged
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
        m.describe("syncs_held_total", "counter", "passes that left the APIC alone because a kind had not synced")
        self.not_owned: dict[tuple[str, str], str] = {}  # (kind, name) -> why its APIC objects are not written

    def _leadership(self, leading: bool) -> None:
        self.metrics.set("leader", 1.0 if leading else 0.0)
        self._last_synced = None  # a new leader repairs everything once
        self._reported = set()  # and reports what is invalid again
        self.runner.run()

    def stop(self) -> None:
        self.runner.stop()

    def health(self) -> tuple[bool, str]:
        """For /healthz: 200 only with a synced cache (on the standby too); the body says what is going on."""
        if not self.alive:
            return False, "not ready: starting"
        if not self.cache.synced:
            return False, (f"not ready: the cluster cache has not synced {self.cache.describe_unsynced()}; "
                           "the APIC is left as it is until every kind has synced")
        role = "leader" if self.elector.is_leader else "standby"
        return True, f"ok: {role}" + (f"; last APIC sync failed: {self.last_error}" if self.last_error else "")

    def run(self) -> None:
        self.cache.start()
        self.elector.start()
        self.alive = True
        try:
            self.runner.loop()
        finally:
            self.elector.stop()
            self.cache.stop()
            if self._session is not None:
                self._session.close()

    def _pass(self, trigger: Trigger) -> bool:
        first = self.state.model is None
        ok = self.reconcile(force=trigger is not Trigger.REQUESTED)
        if trigger is Trigger.PERIODIC or (first and self.state.model is not None):  # each resync, the first model
            settle_heap()
        return ok

    def reconcile(self, force: bool = False) -> bool:
        """One pass; False when the APIC sync failed (the runner retries after a backoff)."""
        if not self.elector.is_leader:
            return True  # a standby replica keeps its cache warm and nothing else
        if not self.cache.synced:
            self._hold()
            return True  # the cache's progress asks for the next pass
        if self._held is not None:
            log.info("every kind has synced: syncing the APIC again")
            self._held = None
        model, rejected = build_model(self.cache, self.config, self.state)
        self.metrics.set("invalid_objects", float(len(rejected) + len(model.errors)))
        self._report(rejected, model)
        synced_ok = self._sync_apic(model, force)
        self._update_status(rejected, synced_ok)
        return synced_ok is not False

    def _hold(self) -> None:
        """Unknown is never absent: with a kind not synced, the model would lack its objects and the sync would
        delete their APIC objects. Leave the APIC alone, and say so (log, metric, /healthz, conditions)."""
        why, failing = self.cache.describe_unsynced(), self.cache.failing()
        self.metrics.inc("syncs_held_total")
        if why != self._held:
            log.log(logging.WARNING if failing else logging.INFO,
                    "not syncing the APIC: the cluster cache has not synced %s; the APIC is left as it is", why)
            self._held = why
        self._last_synced = None  # once synced, compare with the APIC in full
        if self.apic is not None and failing:  # (not for the first lists at start: that is no news)
            self._hold_status(f"not synced: the cluster cache has not synced {why}; the APIC is left as it is")

    def _report(self, rejected: tuple[Rejected, ...], model: Model) -> None:
        """An Event for each problem that is new since the last pass (a problem that stays is on the object's
        Valid condition; one that comes back is counted on its Event again)."""
        now: set[tuple[str, str, str, str, str]] = set()
        found: list[tuple[Involved, str, str]] = []
        for r in rejected:
            reason = "Conflict" if r.conflict else f"Invalid{r.kind}"
            found.append((self._involved(r.kind, r.namespace, r.name), reason, r.problem.message))
        for n in model.errors:
            target = _notice_object(n)
            if target is not None:
                reason = ("PolicyRefused" if n.severity == "refused" else "EPGNotAllowed" if n.refused
                          else "InvalidEPGAnnotation")
                found.append((self._involved(*target), reason, str(n)))
        for obj, reason, message in found:
            key = (obj.kind, obj.namespace, obj.name, reason, digest(truncate(message)))
            if key in self._reported or self.events.warn(obj, reason, message):
                now.add(key)
        self._reported = now

    def _involved(self, kind: str, namespace: str, name: str) -> Involved:
        meta = (self.cache.get(kind, namespace, name) or {}).get("metadata") or {}
        return Involved(kind, namespace, name, meta.get("uid"))

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
        started = self.clock.monotonic()
        try:
            if self._session is None:
                a = self.apic
                self._session = ApicSession(a.urls, a.username, a.password, ca_file=a.ca_file, insecure=a.insecure,
                                            retries=a.retries, backoff=a.backoff)
            before = self._session.counters.requests
            p = plan(desired, self._session)
            written = apply(p, _LeaderOnly(self._session, self.elector)) if not p.is_empty else 0  # type: ignore[arg-type]
            self._report_not_owned(model, p)
            self.metrics.inc("apic_requests_total", float(self._session.counters.requests - before))
            self.metrics.inc("apic_posts_total", float(written))
            self.metrics.set("objects_owned", float(sum(_count(t) for t in desired)))
            self.metrics.observe("sync_duration_seconds", self.clock.monotonic() - started)
            if written:
                log.info("APIC sync: %s", p.summary() if hasattr(p, "summary") else f"{written} POST(s)")
            self._last_synced, self.last_error = digest, None
            return True
        except ApicError as exc:
            self.metrics.inc("api_errors_total", target="apic")
            self.last_error = str(exc)
            log.warning("APIC sync failed (%s); nodes keep enforcing; retrying with backoff", exc)
            return False

    def _report_not_owned(self, model: Model, p: Any) -> None:
        from apic_client.sync import not_owned_by_object

        self.metrics.set("apic_objects_not_owned", float(len(p.not_owned)))
        for warning in p.warnings:
            log.warning("APIC: %s", warning)
        self.not_owned = not_owned_by_object(model, p.not_owned)

    def _update_status(self, rejected: tuple[Rejected, ...], synced: bool | None) -> None:
        bad = {(r.kind, r.name): r for r in rejected}
        now = self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        for kind, plural in PLURALS.items():
            for body in self.cache.objects(kind):
                meta = body.get("metadata") or {}
                name, generation = meta.get("name", ""), meta.get("generation")
                problem = bad.get((kind, name))
                reason = "Valid" if problem is None else ("Conflict" if problem.conflict else "Invalid")
                conditions = [_condition("Valid", problem is None, reason,
                                         problem.problem.message if problem else "accepted", generation, now)]
                if synced is not None:
                    foreign = self.not_owned.get((kind, name)) if synced and problem is None else None
                    ok = synced and problem is None and foreign is None
                    conditions.append(_condition("Synced", ok, "Synced" if ok else "NotOwned" if foreign
                                                 else "NotSynced",
                                                 "in sync with the APIC" if ok else (
                                                     foreign or (problem.problem.message if problem else None)
                                                     or self.last_error or "APIC sync failed"), generation, now))
                self._patch_status(kind, plural, body, conditions)

    def _hold_status(self, message: str) -> None:
        """Synced=False on every EndpointGroup and Contract the cache knows; Valid stays as it was (judging it
        needs every kind)."""
        now = self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        for kind, plural in PLURALS.items():
            for body in self.cache.objects(kind):
                generation = (body.get("metadata") or {}).get("generation")
                status = body.get("status") or {}
                kept = [c for c in status.get("conditions") or [] if c.get("type") != "Synced"]
                self._patch_status(kind, plural, body,
                                   [*kept, _condition("Synced", False, "CacheNotSynced", message, generation, now)],
                                   status.get("observedGeneration"))

    def _patch_status(self, kind: str, plural: str, body: dict[str, Any], conditions: list[dict[str, Any]],
                      observed: Any = _UNSET) -> None:
        meta = body.get("metadata") or {}
        name = meta.get("name", "")
        generation = meta.get("generation") if observed is _UNSET else observed
        status = body.get("status") or {}
        if _same(status.get("conditions") or [], conditions) and status.get("observedGeneration") == generation:
            return
        if not self.elector.is_leader:
            return  # the Lease lapsed during this pass: write nothing more
        old = {c["type"]: c for c in status.get("conditions") or []}
        for c in conditions:  # keep the transition time of conditions whose status did not change
            prev = old.get(c["type"])
            if prev and prev.get("status") == c["status"]:
                c["lastTransitionTime"] = prev.get("lastTransitionTime", c["lastTransitionTime"])
        try:
            self.custom.patch_cluster_custom_object_status(
                GROUP, VERSION, plural, name, {"status": {"observedGeneration": generation, "conditions": conditions}},
                _request_timeout=REQUEST_TIMEOUT)
        except Exception as exc:  # refused, or the API server is not reachable
            self.metrics.inc("api_errors_total", target="kubernetes")
            log.warning("could not update status of %s %s: %s", kind, name, describe_error(exc))


def _condition(kind: str, ok: bool, reason: str, message: str, generation: Any, now: str) -> dict[str, Any]:
    return {"type": kind, "status": "True" if ok else "False", "reason": reason, "message": truncate(message),
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
    """Applies its node's ruleset from the cluster cache, incrementally, and repairs a hand-edited table. It
    applies only from a cache in which every kind has synced: until then the table in force stays as it is
    (the one a previous agent left, or none), and /healthz says so. A failed apply is retried after 1, 2, 4 ...
    at most 30 s (plus jitter), with what the cache holds then."""

    def __init__(self, api: k8s.ApiClient, node: str, *, netns: str | None = None, debounce: float = 0.02,
                 drift_every: float = 30.0, metrics: Metrics | None = None,
                 lister: Callable[[str | None], str] | None = None, config: tuple[Document, ...] = (),
                 clock: Clock = SYSTEM, backoff: Backoff | None = None,
                 dataplane: NodeDataplane | None = None, drops: bool = True, drop_window: float = 10.0) -> None:
        """`drops`: read the node's drop log, attribute each drop (JSON lines on the `epgbridge.drops` logger,
        metrics, Events on the pods) and serve them (`routes`); `drop_window`: seconds between summaries."""
        self.node, self.netns, self.config, self.clock = node, netns, config, clock
        self.state = Incremental()
        self._engine: Engine | None = None
        self.metrics = metrics or Metrics()
        self.cache = ClusterCache(api, (*KINDS, node_kind(node)), clock=clock, metrics=self.metrics)
        self.dataplane = dataplane or NodeDataplane(node, netns=netns)
        self.runner = BoundedFrequencyRunner(f"agent {node}", self._pass, min_interval=debounce, period=drift_every,
                                             backoff=backoff or Backoff(1.0, 30.0), clock=clock)
        self.cache.on_change.append(self.runner.run)
        self._list = lister or _list_table
        self._applied: tuple[Model, Table] | None = None  # the model and table in force (after an apply)
        self._drop_view: tuple[tuple[Model, Table], Engine] | None = None
        self.events = EventRecorder(api, "epgbridge-agent", clock=clock)
        self.drops = (DropWatcher(node, self._view, netns=netns, metrics=self.metrics, write=_drop_line,
                                  event=self._drop_event, flush_every=drop_window) if drops else None)
        self._baseline: str | None = None
        self._found_table: bool | None = None  # whether a table was in force when this agent started
        self._holding = False  # none was: the node holds new forwarded connections until the first apply
        self._applied_at: str | None = None
        self._held: str | None = None
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
        m.describe("applies_held_total", "counter", "passes that kept the table because a kind had not synced")

    def stop(self) -> None:
        self.runner.stop()
        if self.drops is not None:
            self.drops.stop()

    def _view(self) -> tuple[Engine, Table] | None:
        """For the drop watcher's thread: an engine of its own on the model in force, and the table."""
        applied = self._applied
        if applied is None:
            return None
        if self._drop_view is None or self._drop_view[0] is not applied:
            self._drop_view = (applied, Engine(applied[0]))
        return self._drop_view[1], applied[1]

    def _drop_event(self, drop: Any, line: dict[str, Any]) -> None:
        """A Warning Event on the pod whose rules dropped a connection (the correlator rate-limits them)."""
        namespace, _, name = drop.pod.partition("/")
        meta = (self.cache.get("Pod", namespace, name) or {}).get("metadata") or {}
        verb = "would drop (audit mode)" if drop.audit else "dropped"
        port = f"{drop.port}/{drop.protocol}" if drop.port is not None else drop.protocol
        way = "from" if drop.direction == "ingress" else "to"
        peer = drop.src if drop.direction == "ingress" else drop.dst
        self.events.warn(Involved("Pod", namespace, name, meta.get("uid")),
                         "WouldDrop" if drop.audit else "ConnectionDropped",
                         f"node {self.node} {verb} {port} {way} {peer} ({drop.direction}): {drop.reason}")

    def routes(self) -> dict[str, Callable[[Any], tuple[int, Any]]]:
        """`/drops` and `/drops/stats` for `epgbridge drops` (on the metrics address)."""
        watcher = self.drops

        def lines(query: Any) -> tuple[int, Any]:
            if watcher is None:
                return 404, {"error": "this agent does not read drops (started without them)"}
            after = query.get("after", "0")
            if not after.isdigit():
                raise ValueError("after must be a sequence number")
            return 200, {**watcher.status(), "lines": watcher.lines(
                int(after), namespace=query.get("namespace"), pod=query.get("pod"), layer=query.get("layer"),
                verdict=query.get("verdict"))}

        def stats(_query: Any) -> tuple[int, Any]:
            if watcher is None:
                return 404, {"error": "this agent does not read drops (started without them)"}
            return 200, {**watcher.status(), **watcher.stats()}
        return {"/drops": lines, "/drops/stats": stats}

    def in_force(self) -> str:
        """What the node enforces now, in words (for logs and /healthz)."""
        if self.dataplane.table is not None:
            return f"the table this agent applied at {self._applied_at} is in force"
        if self._found_table:
            return "the table a previous agent left is in force (this agent has not applied yet)"
        if self._holding:
            return "no table was in force: new forwarded connections are dropped until the first apply"
        if self._found_table is None:
            return "whether a table is in force is not known yet"
        return f"no {TABLE} table is in force on this node (nothing applied yet)"

    def health(self) -> tuple[bool, str]:
        if not self.alive:
            return False, "not ready: starting"
        if not self.cache.synced:
            return False, (f"not ready: the cluster cache has not synced {self.cache.describe_unsynced()}; "
                           f"not applying until every kind has synced; {self.in_force()}")
        if self.last_error is not None:
            return False, f"not ready: applying the ruleset failed: {self.last_error}; {self.in_force()}"
        if self.dataplane.table is None:  # a DaemonSet readiness probe waits for the node's first table
            return False, f"not ready: the node's first table is not applied yet; {self.in_force()}"
        return True, f"ok: {self.in_force()}"

    def run(self) -> None:
        if self.drops is not None:
            self.drops.start()
        try:
            self._found_table = not self._list(self.netns).startswith("missing:")
        except Exception as exc:
            log.warning("node %s: cannot list table %s: %s", self.node, TABLE, exc)
        if self._found_table is False:  # a node that just started (or lost our table): closed until the first apply
            try:
                self.dataplane.hold()
                self._holding = True
                log.warning("node %s: no table %s was in force: new forwarded connections are dropped until the "
                            "first apply", self.node, TABLE)
            except Exception as exc:
                log.error("node %s: could not close the node's forwarded traffic while starting: %s", self.node, exc)
        self.cache.start()
        self.alive = True
        self.runner.run()
        try:
            self.runner.loop()
        finally:
            self.cache.stop()

    def _pass(self, trigger: Trigger) -> bool:
        if not self.cache.synced:
            self._hold()
            return True  # the cache's progress asks for the next pass
        if self._held is not None:
            log.info("node %s: every kind has synced; applying", self.node)
            self._held = None
        first = self.applied_version < 0
        if trigger is Trigger.PERIODIC and not first:
            drifted = self.check_drift()
            ok = True
            if drifted or self.last_error is not None or self.cache.version != self.applied_version:
                ok = self.reconcile()
            settle_heap()
            return ok
        ok = self.reconcile()
        if first and ok:
            settle_heap()
        return ok

    def _hold(self) -> None:
        """Unknown is never absent: a table built without a kind's objects (NetworkPolicies, say) would open
        what they close. Keep the table in force and say so."""
        why = self.cache.describe_unsynced()
        self.metrics.inc("applies_held_total")
        if why != self._held:
            log.log(logging.WARNING if self.cache.failing() else logging.INFO,
                    "node %s: not applying: the cluster cache has not synced %s; %s", self.node, why, self.in_force())
            self._held = why

    def reconcile(self) -> bool:
        """Bring the node's table to the cluster as cached (the first apply replaces the whole table, later ones
        change what changed). False if it failed."""
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
            # nft applies a transaction whole or not at all: what was in force before still is.
            log.error("node %s: applying the ruleset failed: %s; %s; retrying with backoff", self.node, exc,
                      self.in_force())
            return False
        self.applied_version, self.last_error = version, None
        if self.dataplane.table is not None:
            self._applied = (model, self.dataplane.table)
        if tx.kind != "noop":
            self._applied_at = self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
            self._baseline = None  # the next drift check takes the table as it is now
            self.metrics.inc("applies_total", kind=tx.kind)
        done = time.monotonic()
        self.metrics.observe("apply_duration_seconds", done - started)
        self.metrics.observe("stage_model_seconds", modelled - started)
        self.metrics.observe("stage_compile_seconds", compiled - modelled)
        self.metrics.observe("stage_nft_seconds", done - compiled)
        table = self.dataplane.table
        self.metrics.set("set_elements", float(table.elements if table is not None else 0))
        return True

    def check_drift(self) -> bool:
        """Compare the table with how it looked after our last apply; if someone edited it, forget what we
        applied so that the next apply replaces the whole table."""
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
        return True


DROP_LOG = logging.getLogger("epgbridge.drops.lines")


def _drop_line(text: str) -> None:
    """One attributed drop as a JSON line (cmd_agent sends this logger to standard output, as is)."""
    DROP_LOG.info("%s", text)


def _list_table(netns: str | None) -> str:
    argv = ["nft", "-s", "list", "table", *TABLE.split()]  # -s: without counts, which move with every packet
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    return proc.stdout if proc.returncode == 0 else f"missing: {proc.stderr.strip()}"
