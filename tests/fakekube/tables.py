"""Server-side printing (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`, what `kubectl get` asks for) and
the minimal OpenAPI documents (/openapi/v2, /openapi/v3) the fake serves.

Custom resources print their CRD's `additionalPrinterColumns` (name, then the columns; `priority` > 0 is the
wide output), evaluated with the small JSONPath subset CRDs use (`.a.b`, `[n]`, `[?(@.k=="v")]`); built-in
kinds print the server's default table (Name, Created At), not their real printers (a known gap: `kubectl get
pods` shows no IP or status columns here). The OpenAPI documents hold the CRDs' schemas only.
"""

from __future__ import annotations

import datetime
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


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration, which the server prints `date` columns with ("5m", "3d4h")."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    m, h, d = s // 60, s // 3600, s // 86400
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if h < 192:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    return f"{d}d" if d < 730 else f"{d // 365}y{d % 365}d"


def _cell(values: list[Any], kind: str) -> Any:
    if not values:
        return None
    value = values[0]
    if kind in ("integer", "number", "boolean"):
        return value
    if kind == "date" and isinstance(value, str):
        try:
            then = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        return human_duration((datetime.datetime.now(datetime.UTC) - then).total_seconds())
    return value if isinstance(value, str) else json.dumps(value)


def table(rt: ResourceType, items: list[dict[str, Any]], list_meta: dict[str, Any] | None,
          include: str = "Metadata") -> dict[str, Any]:
    """A meta.k8s.io/v1 Table of `items`; `include` (includeObject) None, Metadata or Object."""
    columns: list[dict[str, Any]] = [{"name": "Name", "type": "string", "format": "name", "priority": 0,
                                      "description": "Name must be unique within a namespace."}]
    custom = list(rt.columns) if rt.custom else []
    if not custom:  # the default table prints the timestamp itself (type string), not an age
        custom = [{"name": "Created At", "type": "string", "format": "date", "jsonPath":
                   ".metadata.creationTimestamp", "description": "CreationTimestamp is a timestamp representing "
                   "the server time when this object was created."}]
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


_WRITE_PARAMETERS = [{"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
                     for name in ("dryRun", "fieldManager", "fieldValidation")]


def _paths(rt: ResourceType) -> dict[str, Any]:
    """The object path of `rt` with its PATCH operation: kubectl looks there for `fieldValidation` support
    (and then validates on the server instead of downloading schemas)."""
    prefix = f"/apis/{rt.group_version}" if rt.group else "/api/v1"
    scope = "/namespaces/{namespace}" if rt.namespaced else ""
    gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
    operation = {"operationId": f"patch{rt.kind}", "x-kubernetes-action": "patch",
                 "x-kubernetes-group-version-kind": gvk, "parameters": _WRITE_PARAMETERS,
                 "responses": {"200": {"description": "OK"}}}
    return {f"{prefix}{scope}/{rt.plural}/{{name}}": {"patch": operation}}


def openapi_v3(types: list[ResourceType], group_version: str) -> dict[str, Any]:
    """/openapi/v3/apis/GROUP/VERSION: each kind's object path (PATCH and its parameters) and the schemas of
    the group-version's custom kinds (built-in kinds have none here)."""
    mine = [rt for rt in types if rt.group_version == group_version]
    schemas = {_definition_name(rt): {**(rt.schema or {}), "x-kubernetes-group-version-kind": _gvk(rt)}
               for rt in mine if rt.custom}
    paths: dict[str, Any] = {}
    for rt in mine:
        paths.update(_paths(rt))
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.37.0-fakekube"}, "paths": paths,
            "components": {"schemas": schemas}}
