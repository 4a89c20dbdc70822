"""Typed, immutable views of the Kubernetes objects epgbridge reads: namespaces, pods, workloads,
and label selectors with the exact upstream matching rules."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

IPAddress = IPv4Address | IPv6Address

# What Go's net.ParseIP accepts, spelled out: hex digits, dots and colons only. Python's ip_address also takes
# an IPv6 zone ("fe80::1%eth0", anything after the %) and integers; neither is an address the API server stores.
_ADDRESS = re.compile(r"[0-9a-fA-F:.]{2,45}\Z")


def parse_ip(value: object) -> IPAddress:
    """An IPv4 or IPv6 address, strictly: no zone id, no prefix or netmask, no leading zeros, no integers.
    Raises ValueError."""
    if not isinstance(value, str) or not _ADDRESS.match(value):
        raise ValueError("not an IP address")
    return ipaddress.ip_address(value)


# Workload kinds whose annotations a pod inherits (DESIGN 4.1).
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet")
SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


@dataclass(frozen=True, slots=True)
class Requirement:
    """One matchExpressions entry."""

    key: str
    operator: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return labels.get(self.key) in self.values
        if self.operator == "NotIn":
            return labels.get(self.key) not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels  # DoesNotExist


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A metav1.LabelSelector: matchLabels AND matchExpressions; the empty selector matches everything."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, value in self.match_labels:
            if labels.get(key) != value:
                return False
        return all(req.matches(labels) for req in self.match_expressions)

    @property
    def is_empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    @property
    def canonical(self) -> str:
        """The selector in words, its terms sorted: equal for selectors that are equal term by term."""
        return ",".join(sorted(self._terms())) if self.match_labels or self.match_expressions else "{}"

    def _terms(self) -> list[str]:
        parts = [f"{k}={v}" for k, v in self.match_labels]
        for r in self.match_expressions:
            if r.operator in ("In", "NotIn"):
                parts.append(f"{r.key} {r.operator.lower()} ({','.join(sorted(r.values))})")
            elif r.operator == "Exists":
                parts.append(r.key)
            else:
                parts.append(f"!{r.key}")
        return parts

    def __str__(self) -> str:
        parts = self._terms()
        return ",".join(parts) if parts else "{} (everything)"


@dataclass(frozen=True, slots=True)
class OwnerRef:
    kind: str
    name: str
    controller: bool = False


@dataclass(frozen=True, slots=True)
class ContainerPort:
    port: int
    protocol: str = "TCP"
    name: str | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Namespace:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    declared: bool = True  # False: used by pods but no Namespace object in the input


@dataclass(frozen=True, slots=True, eq=False)
class Workload:
    """A Deployment, StatefulSet, DaemonSet or ReplicaSet: only what EPG inheritance needs."""

    kind: str
    namespace: str
    name: str
    annotations: Mapping[str, str] = field(default_factory=dict)
    selector: LabelSelector | None = None
    owners: tuple[OwnerRef, ...] = ()
    created: str = ""  # RFC 3339 creationTimestamp; sorts chronologically as text

    @property
    def ref(self) -> str:
        return f"{self.kind.lower()} {self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True, eq=False)
class Node:
    """A node: what the agent needs of it, the address blocks its pods get (`spec.podCIDRs`)."""

    name: str
    pod_cidrs: tuple[IPv4Network | IPv6Network, ...] = ()


@dataclass(frozen=True, slots=True, eq=False)
class Pod:
    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    ips: tuple[IPAddress, ...] = ()  # status.podIPs: at most one per family, the primary (status.podIP) first
    node: str | None = None
    host_network: bool = False
    ports: tuple[ContainerPort, ...] = ()
    owners: tuple[OwnerRef, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def ip(self) -> IPAddress | None:
        """The primary address (status.podIP): the one to show where one address is shown."""
        return self.ips[0] if self.ips else None

    def address(self, family: int) -> IPAddress | None:
        """The pod's address of an IP family (4 or 6), if it has one."""
        return next((a for a in self.ips if a.version == family), None)

    @property
    def is_endpoint(self) -> bool:
        """A peer and target of policy: has an IP of its own (not the node's). A pod is all of its addresses."""
        return bool(self.ips) and not self.host_network

    def named_port(self, name: str, protocol: str) -> int | None:
        """The number of the container port `name` with `protocol`, as NetworkPolicy resolves it."""
        for cp in self.ports:
            if cp.name == name and cp.protocol == protocol:
                return cp.port
        return None
