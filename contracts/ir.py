"""The policy IR: what every renderer consumes, so none of them re-derives policy semantics.

Per node, per local pod, per direction, per layer: the allowed rules, or None where the layer does not restrict
that direction. A rule is (peers, services): an *address group* (a selector's pods, an ipBlock, an EPG's
members), the numbered services it admits, and the named ports it admits, which each destination pod resolves
against its own container ports (`PolicyIR.named_ports`). A connection passes a layer's direction when some rule
covers (peer, protocol, port); it passes when both layers pass in both the source's egress and the
destination's ingress. The EPG layer has one more, cluster-wide, piece: `epg_open`, the addresses that are no
pod's and in no EPG's subnets, which pass the EPG layer for every pod that is not isolated by an invalid
annotation.

Groups are named by their definition (`AddressGroup.key`) and computed once: the same selector in many rules,
policies and nodes is one group. Rules refer to groups; the groups' members are apart (`PolicyIR.groups`), so
a class of pods (the pods whose rules are equal) keeps its rules while pods come and go, and only the groups'
members change. The size of the IR follows the policy, never local pods x peers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from contracts.sets import EVERYWHERE, NOWHERE, AddressSet, IPAddress, ServiceSet


@dataclass(frozen=True, slots=True)
class AddressGroup:
    """A set of addresses named by what defines it (a selector and the namespaces it reaches, an ipBlock, an
    EPG's members of one family). Its members at a given moment are data of the IR (`PolicyIR.members`): rules
    refer to the group, so pods coming and going change members, never rules. `pods`: the members are pods'
    addresses (a dataplane keeps them in hash sets); otherwise CIDRs (interval sets). `family`: 4 or 6 where the
    definition holds one family only."""

    key: str  # the definition, e.g. "pods ns=shop [app=web]": identity, for humans and for generated names
    pods: bool = True
    family: int | None = None

    @property
    def everywhere(self) -> bool:
        return self.key == EVERYWHERE_KEY


EVERYWHERE_KEY = "everywhere"
EVERY_ADDRESS = AddressGroup(EVERYWHERE_KEY, pods=False)


@dataclass(frozen=True, slots=True)
class NamedPort:
    """A NetworkPolicy port given by name: each destination pod resolves it against its container ports."""

    name: str
    protocol: int


@dataclass(frozen=True, slots=True)
class IRRule:
    peers: AddressGroup
    services: ServiceSet  # numbered services
    named: tuple[NamedPort, ...] = ()  # and named ports, resolved by the destination pod
    # What only objects in audit mode would drop: passes (as enforced), and a dataplane reports it as a
    # would-drop. Audit rules come after the other rules of their layer.
    audit: bool = False

    def allows(self, peer: IPAddress, dst: IPAddress, proto: int, port: int | None, ir: PolicyIR) -> bool:
        if not ir.members(self.peers).contains(peer):
            return False
        if self.services.contains(proto, port):
            return True
        return any(n.protocol == proto and port is not None and ir.named_ports.get(n, {}).get(dst) == port
                   for n in self.named)


Rules = tuple[IRRule, ...] | None  # None: this layer does not restrict this direction


@dataclass(frozen=True, slots=True)
class PodIR:
    """One local pod's rules. The pod is all of its addresses (`ips`, one per family, the primary first): each is
    a local address with the same rules in its family's part of a table."""

    key: str  # "namespace/name": for humans and tests only, never rendered into a script
    ips: tuple[IPAddress, ...]
    ingress_epg: Rules
    egress_epg: Rules
    ingress_netpol: Rules
    egress_netpol: Rules
    epg_isolated: bool = False  # an invalid annotation cuts the pod off: not even `epg_open` passes

    def address(self, family: int) -> IPAddress | None:
        return next((a for a in self.ips if a.version == family), None)

    def layers(self) -> Iterator[tuple[str, str, Rules]]:
        yield "ingress", "epg", self.ingress_epg
        yield "ingress", "netpol", self.ingress_netpol
        yield "egress", "epg", self.egress_epg
        yield "egress", "netpol", self.egress_netpol


@dataclass(frozen=True, slots=True)
class NodeIR:
    node: str
    pods: tuple[PodIR, ...]
    # The node's pod address blocks (Node spec.podCIDRs): an address there that is none of `pods` is a pod the
    # engine does not know yet, which a dataplane keeps closed until it does.
    pod_cidrs: AddressSet = NOWHERE


@dataclass(frozen=True, slots=True)
class PolicyIR:
    nodes: Mapping[str, NodeIR]
    epg_open: AddressSet
    # epg_open's complement, in its two parts: every pod's address, and the EPG subnets' other addresses.
    epg_pods: AddressSet = NOWHERE
    epg_subnets: AddressSet = NOWHERE
    # Every named port the rules use, resolved: destination pod address -> port number.
    named_ports: Mapping[NamedPort, Mapping[IPAddress, int]] = field(default_factory=dict)
    # The members of every group the rules use, by group key (computed when first asked for).
    groups: Mapping[str, AddressSet] = field(default_factory=dict)

    def members(self, group: AddressGroup) -> AddressSet:
        return EVERYWHERE if group.everywhere else self.groups[group.key]

    def allows(self, pod: PodIR, direction: str, peer: IPAddress, proto: int, port: int | None, *,
               with_audit: bool = False) -> bool:
        """Whether both layers let this pod's `direction` ("ingress"/"egress") traffic with `peer` through: a
        connection between the peer and the pod's address of the peer's family (none: no connection). As
        enforced, or (`with_audit`) with the objects in audit mode enforced too."""
        ingress = direction == "ingress"
        epg_rules = pod.ingress_epg if ingress else pod.egress_epg
        netpol = pod.ingress_netpol if ingress else pod.egress_netpol
        own = pod.address(peer.version)
        if own is None:
            return False
        dst = own if ingress else peer
        epg_ok = not pod.epg_isolated and (self.epg_open.contains(peer)
                                           or self.rules_allow(epg_rules, peer, dst, proto, port,
                                                               with_audit=with_audit))
        return epg_ok and self.rules_allow(netpol, peer, dst, proto, port, with_audit=with_audit)

    def rules_allow(self, rules: Rules, peer: IPAddress, dst: IPAddress, proto: int, port: int | None, *,
                    with_audit: bool = False) -> bool:
        """Whether a layer's rules let (peer, proto, port) through towards `dst`: as enforced, or (`with_audit`)
        with the objects in audit mode enforced too (their audit rules left out)."""
        if rules is None:
            return True
        return any(r.allows(peer, dst, proto, port, self) for r in rules if not (with_audit and r.audit))

    def pod(self, key: str) -> PodIR | None:
        for node in self.nodes.values():
            for pod in node.pods:
                if pod.key == key:
                    return pod
        return None


__all__ = ["EVERY_ADDRESS", "AddressGroup", "IRRule", "NamedPort", "NodeIR", "PodIR", "PolicyIR", "Rules"]
