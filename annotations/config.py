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
    invalid; "fallback" ignores the invalid layer and uses the next one down.
    `max_policy_elements`: the most a NetworkPolicy may cost (ipBlocks, their excepts and ports, summed over
    its rules; a node's table and the APIC pay about that): one past it is refused, and the pods it selects get
    none of its allows (fail closed), so one namespace's policy cannot stall a node.
    """

    default_epg: EPGRef = DEFAULT_EPG
    epg_annotation_key: str = EPG_ANNOTATION
    invalid_annotation: InvalidAnnotationPolicy = "isolate"
    max_policy_elements: int = 10_000
