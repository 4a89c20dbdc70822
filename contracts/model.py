"""The model: the typed inputs of one cluster (Cluster) and what follows from them alone (Model:
every pod's EPG, the findings about annotations and references, and the indexes the engine shares)."""

from __future__ import annotations

import weakref
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from annotations.config import Config
from annotations.keys import MODE_ANNOTATION
from annotations.resolve import AnnotationReader, Notice, Placement, TenancyGuard, WorkloadIndex, place_pod
from contracts.contract import Contract
from contracts.netpol import NetworkPolicy
from contracts.sets import IPAddress
from epg.endpointgroup import EndpointGroup
from epg.identity import EPGRef
from epg.kube import Namespace, Node, Pod, Workload

# A model made by patching pods into an earlier one: that model (while it lives), the pods that went, the ones
# that came. The engine uses it to update what it computed for the earlier model instead of starting over.
Patch = tuple["weakref.ref[Model]", tuple[Pod, ...], tuple[Pod, ...]]


@dataclass(frozen=True, slots=True)
class Skipped:
    """An object of a kind that does not affect epgbridge's policy (a Service, a ConfigMap, ...), left out of the
    Cluster: counted and, on request, listed. `policy`: a traffic policy of another engine (Calico, Cilium,
    AdminNetworkPolicy), which may decide traffic in the cluster but is not evaluated here."""

    where: str
    kind: str
    name: str
    policy: bool = False


@dataclass(frozen=True, eq=False)
class Cluster:
    """Everything read from a snapshot or a cluster, validated and typed; no derived state."""

    namespaces: Mapping[str, Namespace] = field(default_factory=dict)
    pods: tuple[Pod, ...] = ()
    workloads: tuple[Workload, ...] = ()
    policies: tuple[NetworkPolicy, ...] = ()
    groups: Mapping[EPGRef, EndpointGroup] = field(default_factory=dict)
    contracts: Mapping[tuple[str, str], Contract] = field(default_factory=dict)
    config: Config = field(default_factory=Config)
    skipped: tuple[Skipped, ...] = ()
    nodes: Mapping[str, Node] = field(default_factory=dict)  # (the agent reads its own)


class Model:
    """A Cluster plus every pod's placement into an EPG and the notices found on the way."""

    def __init__(self, cluster: Cluster, previous: Model | None = None) -> None:
        """`previous`: the model of an earlier version of the same cluster. A pod whose own object, workload and
        namespace are the very objects it had there (a ParseCache keeps unchanged objects) keeps its placement."""
        self.cluster = cluster
        self.config = cluster.config
        self.patched_from: Patch | None = None
        self.guard = TenancyGuard(cluster.groups, cluster.config)
        reader = AnnotationReader(cluster.config)
        self._index = WorkloadIndex(cluster.workloads)
        self._warned: dict[Pod, tuple[Notice, ...]] = {}  # each pod's ownership warnings
        self.placements: dict[Pod, Placement] = {}
        self._inputs: dict[Pod, tuple[object, object]] = {}
        reuse = previous is not None and previous.guard == self.guard  # the config, and the EndpointGroups
        for pod in cluster.pods:
            workload = self._workload(pod)
            ns = cluster.namespaces.get(pod.namespace)
            before = previous._inputs.get(pod) if reuse and previous is not None else None
            if before is not None and before[0] is workload and before[1] is ns and previous is not None:
                self.placements[pod] = previous.placements[pod]
                reader.read(pod, pod.annotations, f"pod {pod.key}")  # its own invalid value is still reported
            else:
                self.placements[pod] = place_pod(pod, workload, ns, cluster.config, reader, self.guard)
            self._inputs[pod] = (workload, ns)
        # Report invalid values on objects no pod reads too (DESIGN 4.5: "it is still reported").
        for ns in cluster.namespaces.values():
            reader.read(ns, ns.annotations, f"namespace {ns.name}")
        for w in cluster.workloads:
            reader.read(w, w.annotations, w.ref)
        self._derive(reader.notices)

    @classmethod
    def with_pods(cls, previous: Model, cluster: Cluster, gone: list[Pod], fresh: list[Pod]) -> Model:
        """The model of `cluster`, which is `previous.cluster` with the `gone` pods left out and the `fresh` ones
        in, and nothing else changed: only the fresh pods are placed. Equal to `Model(cluster)`, but for the
        order of `errors` (the fresh pods' own come last)."""
        self = cls.__new__(cls)
        self.cluster, self.config, self.guard = cluster, cluster.config, previous.guard
        self.patched_from = (weakref.ref(previous), tuple(gone), tuple(fresh))
        self._index = previous._index
        self._warned = dict(previous._warned)
        self.placements = dict(previous.placements)
        self._inputs = dict(previous._inputs)
        names = {f"pod {p.key}" for p in gone}
        for pod in gone:
            del self.placements[pod], self._inputs[pod]
            self._warned.pop(pod, None)
        # Namespace and workload values were read (and reported) for the previous model: read them quietly.
        reader = AnnotationReader(cluster.config)
        for pod in fresh:
            workload = self._workload(pod)
            ns = cluster.namespaces.get(pod.namespace)
            for obj in (workload, ns):
                if obj is not None:
                    reader.prime(obj, obj.annotations)
            self.placements[pod] = place_pod(pod, workload, ns, cluster.config, reader, self.guard)
            self._inputs[pod] = (workload, ns)
        kept = (e for e in previous.errors if e.obj not in names and not e.refused)
        self._derive([*kept, *reader.notices])
        return self

    def _workload(self, pod: Pod) -> Workload | None:
        warnings: list[Notice] = []
        workload = self._index.workload_of(pod, warnings)
        if warnings:
            self._warned[pod] = tuple(warnings)
        return workload

    def _derive(self, errors: list[Notice]) -> None:
        """Everything that follows from the placements: findings and the indexes the engine shares. `errors`:
        the invalid values; the tenancy guard's refusals are the placements' own (each object's once)."""
        cluster = self.cluster
        refusals = dict.fromkeys(n for p in cluster.pods for n in self.placements[p].refusals)
        refused = [Notice("refused", f"NetworkPolicy {p.key}", p.refused) for p in cluster.policies if p.refused]
        self.errors: tuple[Notice, ...] = (*errors, *refusals, *(n for n in refused if n not in errors))
        warnings = [w for p in cluster.pods for w in self._warned.get(p, ())]
        undeclared = sorted({
            p.epg for p in self.placements.values()
            if p.epg is not None and p.epg not in cluster.groups and p.epg != cluster.config.default_epg
        })
        for ref in undeclared:
            warnings.append(Notice("warning", f"EPG {ref}", "no EndpointGroup declares it: it has no contracts "
                                   "(only traffic inside the EPG passes)"))
        for group in cluster.groups.values():
            for name in (*group.provides, *group.consumes):
                if self.lookup_contract(group.ref, name) is None:
                    warnings.append(Notice(
                        "warning", f"EndpointGroup {group.ref}",
                        f"contract {name!r} is not in tenant {group.ref.tenant} nor in common: it permits nothing "
                        "here (it may exist only on the APIC)"))
        for pol in cluster.policies:
            if pol.mode_note:
                warnings.append(Notice("warning", f"NetworkPolicy {pol.key}", f"annotation {MODE_ANNOTATION} is "
                                       f"{pol.mode_note}, neither audit nor enforce: the policy is enforced"))
        self.warnings: tuple[Notice, ...] = tuple(warnings)

        self.pods_by_key: dict[str, Pod] = {p.key: p for p in cluster.pods}
        self.endpoints: tuple[Pod, ...] = tuple(p for p in cluster.pods if p.is_endpoint)
        self.pod_by_ip: dict[IPAddress, Pod] = {ip: p for p in self.endpoints for ip in p.ips}
        self.pods_by_ns: dict[str, list[Pod]] = defaultdict(list)
        for p in self.endpoints:
            self.pods_by_ns[p.namespace].append(p)
        self.members: dict[EPGRef, list[Pod]] = defaultdict(list)
        for p in self.endpoints:
            epg = self.placements[p].epg
            if epg is not None:
                self.members[epg].append(p)

    def lookup_contract(self, epg: EPGRef, name: str) -> Contract | None:
        """A contract named by an EPG: in the EPG's tenant first, then in tenant common."""
        contracts = self.cluster.contracts
        return contracts.get((epg.tenant, name)) or contracts.get(("common", name))

    def epg_of(self, pod: Pod) -> EPGRef | None:
        return self.placements[pod].epg

    def group(self, ref: EPGRef) -> EndpointGroup | None:
        return self.cluster.groups.get(ref)
