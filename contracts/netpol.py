"""The networking.k8s.io/v1 NetworkPolicy model, with upstream semantics for ports and ipBlocks."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.sets import (
    ALL_SERVICES,
    NO_SERVICES,
    SCTP,
    TCP,
    UDP,
    AddressSet,
    IPAddress,
    IPNetwork,
    ServiceSet,
    service,
)
from epg.kube import LabelSelector, Pod

PROTOCOL_NUMBERS = {"TCP": TCP, "UDP": UDP, "SCTP": SCTP}
_PROTOCOL_NAMES = {number: name for name, number in PROTOCOL_NUMBERS.items()}


def protocol_name(number: int) -> str:
    """TCP, UDP or SCTP as NetworkPolicy spells them, any other IP protocol by its number."""
    return _PROTOCOL_NAMES.get(number, str(number))


@dataclass(frozen=True, slots=True)
class IPBlock:
    cidr: IPNetwork
    excepts: tuple[IPNetwork, ...] = ()

    @property
    def addresses(self) -> AddressSet:
        return AddressSet.of([self.cidr]).difference(AddressSet.of(self.excepts))

    def contains(self, ip: IPAddress) -> bool:
        return ip in self.cidr and not any(ip in e for e in self.excepts)

    def __str__(self) -> str:
        return str(self.cidr) + (f" except {', '.join(map(str, self.excepts))}" if self.excepts else "")


@dataclass(frozen=True, slots=True)
class Peer:
    """One `from`/`to` element: pod and/or namespace selectors, or an ipBlock."""

    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None

    def __str__(self) -> str:
        if self.ip_block is not None:
            return f"ipBlock {self.ip_block}"
        parts = []
        if self.namespace_selector is not None:
            parts.append(f"namespaces [{self.namespace_selector}]")
        if self.pod_selector is not None:
            parts.append(f"pods [{self.pod_selector}]")
        return " and ".join(parts)


@dataclass(frozen=True, slots=True)
class PolicyPort:
    protocol: str = "TCP"
    port: int | str | None = None  # None: every port of the protocol
    end_port: int | None = None

    def services(self, dst: Pod | None) -> ServiceSet:
        """What this port admits towards `dst` (a pod, or None for a non-pod address). A named port
        resolves against the destination pod's container ports, protocol included."""
        proto = PROTOCOL_NUMBERS[self.protocol]
        if self.port is None:
            return service(proto)
        if isinstance(self.port, str):
            number = dst.named_port(self.port, self.protocol) if dst is not None else None
            return service(proto, number) if number is not None else NO_SERVICES
        return service(proto, self.port, self.end_port)

    def __str__(self) -> str:
        if self.port is None:
            return f"{self.protocol} any port"
        end = f"-{self.end_port}" if self.end_port is not None else ""
        return f"{self.port}{end}/{self.protocol}"


@dataclass(frozen=True, slots=True)
class Rule:
    """An ingress or egress rule. Empty `peers`: every peer; empty `ports`: every port and protocol."""

    peers: tuple[Peer, ...] = ()
    ports: tuple[PolicyPort, ...] = ()

    def services(self, dst: Pod | None) -> ServiceSet:
        """What the rule's ports admit towards `dst`: every port and protocol when it lists none."""
        if not self.ports:
            return ALL_SERVICES
        result = NO_SERVICES
        for port in self.ports:
            result = result.union(port.services(dst))
        return result

    @property
    def has_named_ports(self) -> bool:
        return any(isinstance(p.port, str) for p in self.ports)


@dataclass(frozen=True, slots=True, eq=False)
class NetworkPolicy:
    namespace: str
    name: str
    pod_selector: LabelSelector
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()
    affects_ingress: bool = True
    affects_egress: bool = False
    source: str = ""
    refused: str = ""  # why its rules were set aside (over the element budget): it selects pods, allows nothing
    # Annotated epgbridge.io/mode: audit: evaluated, not enforced (what it alone would drop passes, reported).
    audit: bool = False
    mode_note: str = ""  # an epgbridge.io/mode value that is neither audit nor enforce (enforced, with a warning)

    @property
    def cost(self) -> int:
        """What the policy costs a node's table or the APIC: its ipBlocks and their excepts, and its ports."""
        return sum(len(rule.ports) + sum(1 + len(p.ip_block.excepts) for p in rule.peers if p.ip_block)
                   for rule in (*self.ingress, *self.egress))

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"
