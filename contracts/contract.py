"""Contracts as the APIC has them: Contract > Subject > (Filter, action) > FilterEntry, plus scope."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

from contracts.sets import ALL_SERVICES, NO_SERVICES, ServiceSet, service
from epg.identity import EPGRef

# APIC names for protocols and ports (vzEntry prot, dFromPort/dToPort), and sctp, which we add.
PROTOCOLS = {
    "icmp": 1, "igmp": 2, "tcp": 6, "egp": 8, "igp": 9, "udp": 17, "icmpv6": 58,
    "eigrp": 88, "ospfigp": 89, "pim": 103, "l2tp": 115, "sctp": 132,
}
PORT_NAMES = {"ftpData": 20, "smtp": 25, "dns": 53, "http": 80, "pop3": 110, "https": 443, "rtsp": 554}
ETHER_TYPES = ("ip", "ipv4", "ipv6", "unspecified")


class Action(Enum):
    PERMIT = "permit"
    DENY = "deny"


class Scope(Enum):
    CONTEXT = "context"
    TENANT = "tenant"
    APPLICATION_PROFILE = "application-profile"
    GLOBAL = "global"

    def admits(self, consumer: EPGRef, provider: EPGRef) -> bool:
        """Whether a contract of this scope can connect the two EPGs (wherever the contract lives)."""
        if self is Scope.GLOBAL:
            return True
        if self is Scope.APPLICATION_PROFILE:
            return (consumer.tenant, consumer.app_profile) == (provider.tenant, provider.app_profile)
        return consumer.tenant == provider.tenant


@dataclass(frozen=True, slots=True)
class FilterEntry:
    name: str
    ether_type: str = "ip"
    protocol: int | None = None  # None: every IP protocol
    first_port: int | None = None  # None: every port
    last_port: int | None = None

    def services(self, family: int = 4) -> ServiceSet:
        """What this entry covers, consumer to provider, for traffic of an IP family."""
        if (self.ether_type == "ipv4" and family != 4) or (self.ether_type == "ipv6" and family != 6):
            return NO_SERVICES
        if self.protocol is None:
            return ALL_SERVICES
        return service(self.protocol, self.first_port, self.last_port)

    def describe(self) -> str:
        proto = next((k for k, v in PROTOCOLS.items() if v == self.protocol), str(self.protocol))
        if self.protocol is None:
            return "any protocol"
        if self.first_port is None:
            return proto
        ports = str(self.first_port) if self.first_port == self.last_port else f"{self.first_port}-{self.last_port}"
        return f"{proto} {ports}"


@dataclass(frozen=True, slots=True)
class Filter:
    """A tenant-scoped vzFilter."""

    name: str
    entries: tuple[FilterEntry, ...]


@dataclass(frozen=True, slots=True)
class SubjectFilter:
    """A subject's attachment of a filter (vzRsSubjFiltAtt), which carries the action."""

    filter: Filter
    action: Action = Action.PERMIT


@dataclass(frozen=True, slots=True)
class Subject:
    name: str
    filters: tuple[SubjectFilter, ...]


@dataclass(frozen=True, slots=True)
class ContractEntry:
    """One entry as seen through a contract: the path that explains a verdict."""

    contract: Contract
    subject: Subject
    filter: Filter
    action: Action
    entry: FilterEntry

    def describe(self) -> str:
        return (f"contract {self.contract.tenant}/{self.contract.name} subject {self.subject.name} "
                f"filter {self.filter.name} entry {self.entry.name} ({self.action.value} {self.entry.describe()})")


@dataclass(frozen=True, slots=True)
class Contract:
    tenant: str
    name: str
    scope: Scope = Scope.CONTEXT
    subjects: tuple[Subject, ...] = ()
    source: str = ""
    audit: bool = False  # spec.mode: audit: its deny entries are reported ("would drop"), not enforced

    @property
    def key(self) -> tuple[str, str]:
        return (self.tenant, self.name)

    @property
    def dn(self) -> str:
        return f"uni/tn-{self.tenant}/brc-{self.name}"

    def entries(self) -> Iterator[ContractEntry]:
        for subject in self.subjects:
            for sf in subject.filters:
                for entry in sf.filter.entries:
                    yield ContractEntry(self, subject, sf.filter, sf.action, entry)
