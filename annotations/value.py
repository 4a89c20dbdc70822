"""The `opflex.cisco.com/endpoint-group` value: parse, validate and format.

The value is JSON `{"tenant": ..., "app-profile": ..., "name": ...}`, read as the ACI CNI reads it:
`null`, `""` and a missing field mean "inherit"; `policy-space` stands in for a missing `tenant`; a `name`
of the form `AP|EPG` with no `app-profile` is split; unknown keys are ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from epg.errors import EpgbridgeError
from epg.identity import EPGRef, aci_name_error
from epg.text import shown, size

FIELDS = ("tenant", "app_profile", "name")
VALUE_LIMIT = 4096  # bytes; three names of at most 64 characters need a tenth of it
_JSON_KEYS = {"tenant": "tenant", "app_profile": "app-profile", "name": "name"}


class AnnotationError(EpgbridgeError):
    """An annotation value that cannot be used; the message names the offending field."""


@dataclass(frozen=True, slots=True)
class EPGAnnotation:
    """A possibly partial EPG reference: None fields are inherited from the next layer down."""

    tenant: str | None = None
    app_profile: str | None = None
    name: str | None = None

    def get(self, field: str) -> str | None:
        value: str | None = getattr(self, field)
        return value

    @property
    def is_complete(self) -> bool:
        return None not in (self.tenant, self.app_profile, self.name)


def _field(obj: dict[str, object], key: str) -> str | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise AnnotationError(f'"{key}" must be a string, not {shown(value)}')
    return value


def parse_epg_annotation(text: str) -> EPGAnnotation:
    """Parse an annotation value; raises AnnotationError with a one-line, user-facing message."""
    if size(text) > VALUE_LIMIT:
        raise AnnotationError(f"the value is {size(text)} bytes; an EPG annotation is at most {VALUE_LIMIT}")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise AnnotationError(f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise AnnotationError(f"must be a JSON object like {format_epg_annotation(EPGRef('t', 'ap', 'epg'))}")
    tenant = _field(obj, "tenant")
    policy_space = _field(obj, "policy-space")
    app_profile = _field(obj, "app-profile")
    name = _field(obj, "name")
    if tenant is None:
        tenant = policy_space
    if app_profile is None and name is not None and "|" in name:
        app_profile, _, name = name.partition("|")
        app_profile, name = app_profile or None, name or None
    for key, value in (("tenant", tenant), ("app-profile", app_profile), ("name", name)):
        if value is not None:
            err = aci_name_error(value)
            if err:
                raise AnnotationError(f'"{key}" {err}')
    return EPGAnnotation(tenant, app_profile, name)


def format_epg_annotation(ref: EPGRef) -> str:
    """The canonical annotation value for an EPG (what `epgbridge annotate` writes)."""
    return json.dumps({"tenant": ref.tenant, "app-profile": ref.app_profile, "name": ref.name})
