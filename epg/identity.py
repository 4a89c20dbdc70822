"""EPG identity: (tenant, application profile, EPG name) and the APIC naming rules."""

from __future__ import annotations

import re
from dataclasses import dataclass

from epg.text import shown

_ACI_NAME = re.compile(r"[a-zA-Z0-9_.:-]{1,64}\Z")
ACI_NAME_RULE = "must be 1-64 of [a-zA-Z0-9_.:-]"


def aci_name_error(value: object) -> str | None:
    """Why `value` is not a valid APIC object name, or None when it is."""
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}"
    if not _ACI_NAME.match(value):
        return f"{shown(value)} {ACI_NAME_RULE}"
    return None


def is_aci_name(value: object) -> bool:
    return aci_name_error(value) is None


@dataclass(frozen=True, order=True, slots=True)
class EPGRef:
    """Where an EPG lives on the APIC: uni/tn-{tenant}/ap-{app_profile}/epg-{name}."""

    tenant: str
    app_profile: str
    name: str

    def __str__(self) -> str:
        return f"{self.tenant}/{self.app_profile}/{self.name}"

    @property
    def dn(self) -> str:
        return f"uni/tn-{self.tenant}/ap-{self.app_profile}/epg-{self.name}"

    @classmethod
    def parse(cls, text: str) -> EPGRef:
        """Parse `TENANT/AP/EPG`; raises ValueError with a user-facing message."""
        parts = text.split("/")
        if len(parts) != 3:
            raise ValueError(f"EPG {shown(text)} must be TENANT/APP-PROFILE/EPG")
        for field, value in zip(("tenant", "app-profile", "name"), parts, strict=True):
            err = aci_name_error(value)
            if err:
                raise ValueError(f"EPG {shown(text)}: {field} {err}")
        return cls(*parts)


DEFAULT_EPG = EPGRef("kube", "kubernetes", "kube-default")
