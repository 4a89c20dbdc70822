"""EndpointGroup: an EPG declared in the cluster, with the contracts it provides and consumes."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import Literal

from epg.identity import EPGRef
from epg.kube import LabelSelector

IntraEpg = Literal["permit", "isolate"]


@dataclass(frozen=True, slots=True)
class EndpointGroup:
    ref: EPGRef
    bridge_domain: str | None = None
    intra_epg: IntraEpg = "permit"
    provides: tuple[str, ...] = ()
    consumes: tuple[str, ...] = ()
    subnets: tuple[IPv4Network | IPv6Network, ...] = ()
    source: str = ""  # "file: EndpointGroup name", for messages
    # Namespaces whose pods and workloads may name this EPG in their own annotations (the tenancy guard);
    # None: only namespace annotations place pods here.
    namespace_selector: LabelSelector | None = None
    # spec.mode: audit: the EPG layer's verdicts on its members' connections are reported, not enforced.
    audit: bool = False

    @property
    def is_external(self) -> bool:
        return bool(self.subnets)
