"""The policy IR: what every renderer consumes, so none of them re-derives policy semantics.

Per node, per local pod, per direction, per layer: the allowed (peer addresses, services) rules, or None
where the layer does not restrict that direction. A connection passes a layer's direction when some rule
covers (peer, protocol, port); it passes when both layers pass in both the source's egress and the
destination's ingress. The EPG layer has one more, cluster-wide, piece: `epg_open`, the addresses that are
no pod's and in no EPG's subnets, which pass the EPG layer for every pod that is not isolated by an invalid
annotation (kept out of the per-pod rules so they stay proportional to policy, not to the cluster).
Address sets and rule tuples are shared objects: pods of one EPG share their EPG rules, and a selector's
pods are one AddressSet however many rules use it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from contracts.sets import NO_SERVICES, NOWHERE, AddressSet, IPAddress, ServiceSet


@dataclass(frozen=True, slots=True)
class IRRule:
    peers: AddressSet
    services: ServiceSet


Rules = tuple[IRRule, ...] | None  # None: this layer does not restrict this direction


def disjoint(rules: Rules, version: int) -> Iterator[tuple[int, int, ServiceSet]]:
    """The union of the rules as address ranges that do not overlap, each with every service some rule allows
    for it: (first address, last address, services) in address order, adjacent equal ranges merged. Dataplanes
    whose interval sets refuse overlapping elements (nftables' concatenated sets) render this form."""
    if not rules:
        return
    events: dict[int, list[tuple[int, int]]] = {}
    for i, rule in enumerate(rules):
        for lo, hi in rule.peers.v4 if version == 4 else rule.peers.v6:
            events.setdefault(lo, []).append((i, +1))
            events.setdefault(hi + 1, []).append((i, -1))
    active: dict[int, int] = {}
    cache: dict[frozenset[int], ServiceSet] = {}
    pending: tuple[int, int, ServiceSet] | None = None
    points = sorted(events)
    for start, end in itertools.pairwise(points):
        for i, delta in events[start]:
            active[i] = active.get(i, 0) + delta
            if not active[i]:
                del active[i]
        key = frozenset(active)
        if not key:
            continue
        services = cache.get(key)
        if services is None:
            services = NO_SERVICES
            for i in sorted(key):
                services = services.union(rules[i].services)
            cache[key] = services
        if pending is not None and pending[1] + 1 == start and pending[2] == services:
            pending = (pending[0], end - 1, services)
            continue
        if pending is not None:
            yield pending
        pending = (start, end - 1, services)
    if pending is not None:
        yield pending


def allows(rules: Rules, peer: IPAddress, proto: int, port: int | None) -> bool:
    """Whether a layer's rules let (peer, proto, port) through."""
    if rules is None:
        return True
    return any(r.peers.contains(peer) and r.services.contains(proto, port) for r in rules)


@dataclass(frozen=True, slots=True)
class PodIR:
    key: str  # "namespace/name": for humans and tests only, never rendered into a script
    ip: IPAddress
    ingress_epg: Rules
    egress_epg: Rules
    ingress_netpol: Rules
    egress_netpol: Rules
    epg_isolated: bool = False  # an invalid annotation cuts the pod off: not even `epg_open` passes

    def layers(self) -> Iterator[tuple[str, str, Rules]]:
        yield "ingress", "epg", self.ingress_epg
        yield "ingress", "netpol", self.ingress_netpol
        yield "egress", "epg", self.egress_epg
        yield "egress", "netpol", self.egress_netpol


@dataclass(frozen=True, slots=True)
class NodeIR:
    node: str
    pods: tuple[PodIR, ...]


@dataclass(frozen=True, slots=True)
class PolicyIR:
    nodes: Mapping[str, NodeIR]
    epg_open: AddressSet
    # epg_open's complement, in its two parts: every pod's address, and the EPG subnets' other addresses.
    epg_pods: AddressSet = NOWHERE
    epg_subnets: AddressSet = NOWHERE

    def allows(self, pod: PodIR, direction: str, peer: IPAddress, proto: int, port: int | None) -> bool:
        """Whether both layers let this pod's `direction` ("ingress"/"egress") traffic with `peer` through."""
        ingress = direction == "ingress"
        epg_rules = pod.ingress_epg if ingress else pod.egress_epg
        netpol = pod.ingress_netpol if ingress else pod.egress_netpol
        epg_ok = not pod.epg_isolated and (self.epg_open.contains(peer) or allows(epg_rules, peer, proto, port))
        return epg_ok and allows(netpol, peer, proto, port)

    def pod(self, key: str) -> PodIR | None:
        for node in self.nodes.values():
            for pod in node.pods:
                if pod.key == key:
                    return pod
        return None
