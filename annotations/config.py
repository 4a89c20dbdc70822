"""The typed configuration: one source of truth, loaded once and passed explicitly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from annotations.keys import EPG_ANNOTATION
from epg.identity import DEFAULT_EPG, EPGRef

InvalidAnnotationPolicy = Literal["isolate", "fallback"]


@dataclass(frozen=True, slots=True)
class Config:
    """Cluster-wide settings.

    `invalid_annotation`: "isolate" (default, fail closed) cuts off pods whose effective annotation is
    invalid or refused by the tenancy guard; "fallback" ignores that layer and uses the next one down.
    `tenants`: the tenants in which annotations may name EPGs that no EndpointGroup declares (None: the
    default EPG's tenant only); annotations never make epgbridge create any other tenant.
    `max_policy_elements`: the most a NetworkPolicy may cost (ipBlocks, their excepts and ports, summed over
    its rules; a node's table and the APIC pay about that): one past it is refused, and the pods it selects get
    none of its allows (fail closed), so one namespace's policy cannot stall a node.
    """

    default_epg: EPGRef = DEFAULT_EPG
    epg_annotation_key: str = EPG_ANNOTATION
    invalid_annotation: InvalidAnnotationPolicy = "isolate"
    tenants: tuple[str, ...] | None = None
    max_policy_elements: int = 10_000

    @property
    def allowed_tenants(self) -> tuple[str, ...]:
        """Where annotations may name undeclared EPGs."""
        return self.tenants if self.tenants is not None else (self.default_epg.tenant,)
