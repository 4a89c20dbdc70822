"""EndpointGroup: an EPG declared in the cluster, with the contracts it provides and consumes."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import Literal

from epg.identity import EPGRef

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

    @property
    def is_external(self) -> bool:
        return bool(self.subnets)
