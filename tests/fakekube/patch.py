"""The three PATCH formats: JSON merge patch (RFC 7386), JSON patch (RFC 6902), and strategic merge patch.

Strategic merge is simplified to merge patch plus merge-by-key for the lists whose patch strategy is
`merge` in the upstream types (containers by name, ports by containerPort, conditions by type, ...); the
`$patch`, `$retainKeys`, `$setElementOrder` and `$deleteFromPrimitiveList` directives are not supported
(a patch using them is a 400). A PatchError becomes a 400 or 422 Status like the real server's.
"""

from __future__ import annotations

import copy
from typing import Any

# Lists merged by key under strategic merge patch (field name -> merge key), from the upstream Go types.
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name", "volumes": "name",
    "env": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath", "ports": "containerPort",
    "conditions": "type", "ownerReferences": "uid", "imagePullSecrets": "name", "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey", "readinessGates": "conditionType", "addresses": "type",
    "taints": "key", "images": "names", "resourceClaims": "name", "containerStatuses": "name",
}
SET_LISTS = {"finalizers"}  # merged as sets


class PatchError(Exception):
    """A patch that cannot be applied; `code` is the HTTP status the server would send."""

    def __init__(self, message: str, code: int = 422) -> None:
        super().__init__(message)
        self.code = code


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null removes, everything else (lists included) replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def strategic_merge_patch(target: Any, patch: Any, field: str = "") -> Any:
    if isinstance(patch, dict):
        for key in patch:
            if isinstance(key, str) and key.startswith("$"):
                raise PatchError(f"strategic merge patch directive {key} is not supported by the fake server", 400)
        out = dict(target) if isinstance(target, dict) else {}
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = strategic_merge_patch(out.get(key), value, key)
        return out
    if isinstance(patch, list) and isinstance(target, list):
        if field in SET_LISTS:
            return list(target) + [v for v in patch if v not in target]
        merge_key = MERGE_KEYS.get(field)
        if merge_key and all(isinstance(v, dict) and merge_key in v for v in patch):
            out_list = [copy.deepcopy(v) for v in target]
            for item in patch:
                for i, existing in enumerate(out_list):
                    if isinstance(existing, dict) and existing.get(merge_key) == item[merge_key]:
                        out_list[i] = strategic_merge_patch(existing, item)
                        break
                else:
                    out_list.append(strategic_merge_patch({}, item))
            return out_list
    return copy.deepcopy(patch)


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"JSON pointer {path!r} must start with /", 400)
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str], op: str) -> tuple[Any, str]:
    cur = doc
    for p in parts[:-1]:
        if isinstance(cur, dict) and p in cur:
            cur = cur[p]
        elif isinstance(cur, list) and p.isdigit() and int(p) < len(cur):
            cur = cur[int(p)]
        else:
            raise PatchError(f"{op} operation does not apply: doc is missing path: /{'/'.join(parts)}")
    return cur, parts[-1]


def _get(doc: Any, parts: list[str], op: str) -> Any:
    if not parts:
        return doc
    parent, last = _parent(doc, parts, op)
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent[int(last)]
    raise PatchError(f"{op} operation does not apply: doc is missing path: /{'/'.join(parts)}")


def _remove(doc: Any, parts: list[str], op: str) -> Any:
    parent, last = _parent(doc, parts, op)
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise PatchError(f"{op} operation does not apply: doc is missing path: /{'/'.join(parts)}")


def _add(doc: Any, parts: list[str], value: Any, op: str, replace: bool = False) -> Any:
    if not parts:
        return copy.deepcopy(value)
    parent, last = _parent(doc, parts, op)
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise PatchError(f"replace operation does not apply: doc is missing key: /{'/'.join(parts)}")
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        if last == "-" and not replace:
            parent.append(copy.deepcopy(value))
        elif last.isdigit() and int(last) <= len(parent) - (1 if replace else 0):
            if replace:
                parent[int(last)] = copy.deepcopy(value)
            else:
                parent.insert(int(last), copy.deepcopy(value))
        else:
            raise PatchError(f"{op} operation does not apply: index out of range: /{'/'.join(parts)}")
    else:
        raise PatchError(f"{op} operation does not apply: doc is missing path: /{'/'.join(parts)}")
    return doc


def json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902: add, remove, replace, move, copy, test, applied in order to a copy of `target`."""
    if not isinstance(ops, list):
        raise PatchError("json patch must be a list of operations", 400)
    doc = copy.deepcopy(target)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"invalid JSON patch operation: {op!r}", 400)
        name, parts = op["op"], _pointer(op["path"])
        if name == "add":
            doc = _add(doc, parts, op.get("value"), name)
        elif name == "remove":
            _remove(doc, parts, name)
        elif name == "replace":
            doc = _add(doc, parts, op.get("value"), name, replace=True)
        elif name in ("move", "copy"):
            src = _pointer(op.get("from", ""))
            value = _remove(doc, src, name) if name == "move" else copy.deepcopy(_get(doc, src, name))
            doc = _add(doc, parts, value, name)
        elif name == "test":
            if _get(doc, parts, name) != op.get("value"):
                raise PatchError(f"testing value /{'/'.join(parts)} failed")
        else:
            raise PatchError(f"Unexpected kind: {name}", 400)
    return doc
