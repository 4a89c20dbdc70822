"""Server-side printing (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`, what `kubectl get` asks for) and
the minimal OpenAPI documents (/openapi/v2, /openapi/v3) the fake serves.

Custom resources print their CRD's `additionalPrinterColumns` (name, then the columns; `priority` > 0 is the
wide output), evaluated with the small JSONPath subset CRDs use (`.a.b`, `[n]`, `[?(@.k=="v")]`); built-in
kinds print the server's default table (Name, Created At), not their real printers (a known gap: `kubectl get
pods` shows no IP or status columns here). The OpenAPI documents hold the CRDs' schemas only.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from .resources import ResourceType

TABLE_ACCEPT = re.compile(r"as=Table")
_STEP = re.compile(r'\.([A-Za-z0-9_-]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_.-]+)\s*==\s*"([^"]*)"\)\]')


def json_path(obj: Any, path: str) -> list[Any]:
    """The values `path` selects in `obj` (a filter may select several; a missing field selects none)."""
    values = [obj]
    position = 0
    while position < len(path):
        match = _STEP.match(path, position)
        if match is None:
            raise ValueError(f"unsupported JSONPath {path!r}")
        position = match.end()
        field, index, key, wanted = match.groups()
        out: list[Any] = []
        for v in values:
            if field is not None and isinstance(v, dict) and field in v:
                out.append(v[field])
            elif index is not None and isinstance(v, list) and int(index) < len(v):
                out.append(v[int(index)])
            elif key is not None and isinstance(v, list):
                for item in v:
                    found = json_path(item, "." + key)
                    if found and str(found[0]) == wanted:
                        out.append(item)
        values = out
    return values


def _cell(values: list[Any], kind: str) -> Any:
    if not values:
        return None
    value = values[0]
    if kind in ("integer", "number", "boolean"):
        return value
    return value if isinstance(value, str) else json.dumps(value)


def table(rt: ResourceType, items: list[dict[str, Any]], list_meta: dict[str, Any] | None,
          include: str = "Metadata") -> dict[str, Any]:
    """A meta.k8s.io/v1 Table of `items`; `include` (includeObject) None, Metadata or Object."""
    columns: list[dict[str, Any]] = [{"name": "Name", "type": "string", "format": "name", "priority": 0,
                                      "description": "Name must be unique within a namespace."}]
    custom = list(rt.columns) if rt.custom else []
    if not custom:
        custom = [{"name": "Created At", "type": "date", "jsonPath": ".metadata.creationTimestamp",
                   "description": "CreationTimestamp is a timestamp representing the server time when this "
                   "object was created."}]
    for c in custom:
        columns.append({"name": c["name"], "type": c.get("type", "string"), "format": c.get("format", ""),
                        "description": c.get("description", ""), "priority": c.get("priority", 0)})
    rows = []
    for obj in items:
        cells = [obj["metadata"]["name"], *(_cell(json_path(obj, c["jsonPath"]), c.get("type", "string"))
                                            for c in custom)]
        row: dict[str, Any] = {"cells": cells}
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": obj["metadata"]}
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": dict(list_meta or {}),
            "columnDefinitions": columns, "rows": rows}


def _definition_name(rt: ResourceType) -> str:
    return ".".join([*reversed(rt.group.split(".")), rt.version, rt.kind])


def _gvk(rt: ResourceType) -> list[dict[str, str]]:
    return [{"group": rt.group, "version": rt.version, "kind": rt.kind}]


def openapi_v2(types: list[ResourceType]) -> dict[str, Any]:
    """A Swagger 2.0 document with a definition per custom resource kind."""
    definitions = {_definition_name(rt): {**(rt.schema or {}), "x-kubernetes-group-version-kind": _gvk(rt)}
                   for rt in types if rt.custom}
    return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.37.0-fakekube"}, "paths": {},
            "definitions": definitions}


def openapi_v3_index(types: list[ResourceType]) -> dict[str, Any]:
    """/openapi/v3: one entry per group-version, each with a URL whose hash changes with its schemas."""
    paths: dict[str, Any] = {}
    for gv in sorted({rt.group_version for rt in types}):
        prefix = "api/" if "/" not in gv else "apis/"
        doc = json.dumps(openapi_v3(types, gv), sort_keys=True).encode()
        paths[prefix + gv] = {"serverRelativeURL": f"/openapi/v3/{prefix}{gv}?hash="
                              + hashlib.sha512(doc).hexdigest()[:128].upper()}
    return {"paths": paths}


def openapi_v3(types: list[ResourceType], group_version: str) -> dict[str, Any]:
    """/openapi/v3/apis/GROUP/VERSION: components.schemas for the group-version's custom kinds."""
    schemas = {_definition_name(rt): {**(rt.schema or {}), "x-kubernetes-group-version-kind": _gvk(rt)}
               for rt in types if rt.group_version == group_version and rt.custom}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.37.0-fakekube"}, "paths": {},
            "components": {"schemas": schemas}}
