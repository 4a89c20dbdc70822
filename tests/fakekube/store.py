"""The fake API server's state: objects, one global resourceVersion, the change history watches replay,
and the write semantics of the real server's generic registry (create, update, patch, delete, status).

All writes go through one lock, and every change is handed to the open watches under that same lock, so
each watch sees changes in resourceVersion order with nothing missed between a list and a watch.
"""

from __future__ import annotations

import base64
import copy
import datetime
import json
import queue
import random
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from . import schema
from .patch import PatchError, json_patch, merge_patch, strategic_merge_patch
from .resources import CRDS, FIELD_LABELS, NAMESPACES, PODS, Catalogue, ResourceType
from .selectors import field_selector, label_selector

NS_NAME_LABEL = "kubernetes.io/metadata.name"
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\Z")
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # what generateName appends, as upstream
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"


class ApiError(Exception):
    """A failed request: `status` is the `Status` object the server sends with HTTP status `code`."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.status: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                       "message": message, "reason": reason, "code": code}
        if details:
            self.status["details"] = details


def _details(rt: ResourceType, name: str) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name, "kind": rt.plural}
    if rt.group:
        d["group"] = rt.group
    return d


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rt.qualified} "{name}" not found', _details(rt, name))


def conflict(rt: ResourceType, name: str, why: str) -> ApiError:
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {rt.qualified} "{name}": {why}',
                    _details(rt, name))


def invalid(rt: ResourceType, name: str, field_path: str, message: str) -> ApiError:
    return invalid_causes(rt, name, [schema.Cause(field_path, "FieldValueInvalid", message)])


def invalid_causes(rt: ResourceType, name: str, causes: list[schema.Cause]) -> ApiError:
    """422 Invalid, worded as the server words it: one cause plain, several in brackets."""
    details = _details(rt, name)
    details["kind"] = rt.kind if not rt.group else f"{rt.kind}.{rt.group}" if rt.custom else rt.kind
    details["causes"] = [c.to_dict() for c in causes]
    listed = str(causes[0]) if len(causes) == 1 else "[" + ", ".join(map(str, causes)) + "]"
    return ApiError(422, "Invalid", f'{details["kind"]} "{name}" is invalid: {listed}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


class FakeLimit(Exception):
    """Something this fake cannot do faithfully (answered 500 and recorded in `FakeKube.server_errors`)."""


STALE = "the object has been modified; please apply your changes to the latest version and try again"
NS = NAMESPACES
FIELD_VALIDATION = ("Ignore", "Warn", "Strict")


@dataclass
class Options:
    """How one write is to be done (`dryRun`, `fieldValidation`) and what it reports back (warnings)."""

    dry_run: bool = False
    field_validation: str = "Warn"
    warnings: list[str] = field(default_factory=list)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Change:
    """One committed write: the object before and after (None for a create / a delete's after)."""

    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    resource: tuple[str, str]
    old: dict[str, Any] | None
    new: dict[str, Any] | None


class Watch:
    """One open watch: its filter and the queue of events (or control items) its HTTP stream drains."""

    END = ("END",)

    def __init__(self, rt: ResourceType, namespace: str | None, labels: str | None, fields: str | None) -> None:
        self.rt = rt
        self.namespace = namespace
        try:
            self._labels = label_selector(labels)
            self._fields = field_selector(fields, FIELD_LABELS.get(rt.key, ()))
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        self.queue: queue.Queue[tuple[Any, ...]] = queue.Queue()

    def matches(self, obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        return self._labels(meta.get("labels") or {}) and self._fields(obj)

    def event(self, type_: str, obj: dict[str, Any]) -> None:
        self.queue.put(("EVENT", type_, obj))

    def offer(self, change: Change) -> None:
        """Queue what this watch should see of `change`; selector transitions become ADDED or DELETED."""
        if change.resource != self.rt.key:
            return
        was, now = self.matches(change.old), self.matches(change.new)
        if change.type == "DELETED":
            if was and change.old is not None:
                self.event("DELETED", change.old)
        elif now and change.new is not None:
            self.event("MODIFIED" if was else "ADDED", change.new)
        elif was and change.old is not None:
            gone = copy.deepcopy(change.old)  # no longer selected: DELETED with the old state at the new version
            gone["metadata"]["resourceVersion"] = str(change.rv)
            self.event("DELETED", gone)


@dataclass
class Store:
    """Objects by resource, one resourceVersion counter, and the history since the last compaction."""

    rv: int = 1000
    lock: threading.RLock = field(default_factory=threading.RLock)
    objects: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]] = field(default_factory=dict)
    history: list[Change] = field(default_factory=list)
    base_rv: int = 1000  # history covers every change after this version
    base: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]] = field(default_factory=dict)
    watches: set[Watch] = field(default_factory=set)
    catalogue: Catalogue = field(default_factory=Catalogue)
    grace_default: int = 30  # seconds a pod's deletion waits for its kubelet when the spec says nothing

    def __post_init__(self) -> None:
        for name in DEFAULT_NAMESPACES:
            self.create(NS, "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        self.compact()  # a fresh cluster's history starts after its built-in namespaces

    # --- reading ---

    def _bucket(self, rt: ResourceType) -> dict[tuple[str, str], dict[str, Any]]:
        return self.objects.setdefault(rt.key, {})

    def current(self, rt: ResourceType, ns: str, name: str) -> dict[str, Any]:
        obj = self._bucket(rt).get((ns, name))
        if obj is None:
            raise not_found(rt, name)
        return obj

    def get(self, rt: ResourceType, ns: str, name: str) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self.current(rt, ns, name))

    def _state_at(self, rt: ResourceType, rv: int) -> dict[tuple[str, str], dict[str, Any]]:
        state = dict(self.base.get(rt.key, {}))
        for c in self.history:
            if c.rv > rv:
                break
            if c.resource != rt.key:
                continue
            obj = c.new if c.new is not None else c.old
            assert obj is not None
            key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
            if c.type == "DELETED":
                state.pop(key, None)
            else:
                state[key] = obj
        return state

    def list(self, rt: ResourceType, ns: str | None, *, labels: str | None = None, fields: str | None = None,
             limit: int = 0, continue_: str | None = None, resource_version: str | None = None,
             match: str | None = None) -> dict[str, Any]:
        """A `<Kind>List`, paged with `limit`/`continue` over one consistent snapshot as etcd serves it."""
        with self.lock:
            after: tuple[str, str] | None = None
            if continue_:
                try:
                    token = json.loads(base64.urlsafe_b64decode(continue_.encode()))
                    list_rv, after = int(token["rv"]), (token["start"][0], token["start"][1])
                except (ValueError, KeyError, TypeError, IndexError):
                    raise bad_request(f"continue key is not valid: {continue_!r}") from None
                if list_rv < self.base_rv:
                    raise ApiError(410, "Expired", "The provided continue parameter is too old to display a "
                                   "consistent list result. You can start a new list without the continue "
                                   "parameter.")
                state = self._state_at(rt, list_rv)
            elif resource_version not in (None, "", "0"):
                try:
                    wanted = int(resource_version)
                except ValueError:
                    raise bad_request(f"invalid resource version: {resource_version!r}") from None
                if wanted > self.rv:
                    raise ApiError(504, "Timeout", f"Too large resource version: {wanted}, current: {self.rv}",
                                   {"causes": [{"reason": "ResourceVersionTooLarge",
                                                "message": "Too large resource version"}], "retryAfterSeconds": 1})
                if match == "Exact":
                    if wanted < self.base_rv:
                        raise ApiError(410, "Expired", f"too old resource version: {wanted} ({self.base_rv + 1})")
                    list_rv, state = wanted, self._state_at(rt, wanted)
                else:
                    list_rv, state = self.rv, self._bucket(rt)
            else:
                if match:
                    raise bad_request("resourceVersionMatch is forbidden unless resourceVersion is provided")
                list_rv, state = self.rv, self._bucket(rt)
            probe = Watch(rt, ns, labels, fields)  # the same filter a watch would apply
            items = [state[k] for k in sorted(state) if (after is None or k > after) and probe.matches(state[k])]
            meta: dict[str, Any] = {"resourceVersion": str(list_rv)}
            if limit and len(items) > limit:
                rest = len(items) - limit
                items = items[:limit]
                last = items[-1]["metadata"]
                start = [last.get("namespace", ""), last["name"]]
                meta["continue"] = base64.urlsafe_b64encode(json.dumps({"rv": list_rv, "start": start}).encode()
                                                            ).decode()
                if not labels and not fields:
                    meta["remainingItemCount"] = rest
            out_items = []
            for obj in items:
                item = copy.deepcopy(obj)
                if not rt.custom:  # built-in list items carry no apiVersion/kind on the wire
                    item.pop("apiVersion", None)
                    item.pop("kind", None)
                out_items.append(item)
            return {"kind": f"{rt.kind}List", "apiVersion": rt.group_version, "metadata": meta, "items": out_items}

    # --- writing ---

    def _commit(self, rt: ResourceType, type_: str, old: dict[str, Any] | None, new: dict[str, Any],
                opts: Options | None = None) -> dict[str, Any]:
        if opts is not None and opts.dry_run:  # answered as if done: nothing stored, no version, no event
            out = copy.deepcopy(new)
            if old is None:
                out["metadata"].pop("resourceVersion", None)
            return out
        self.rv += 1
        new = copy.deepcopy(new)
        new["metadata"]["resourceVersion"] = str(self.rv)
        meta = new["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        if type_ == "DELETED":
            self._bucket(rt).pop(key, None)
        else:
            self._bucket(rt)[key] = new
        change = Change(self.rv, type_, rt.key, old, new if type_ != "DELETED" else None)
        if type_ == "DELETED":
            change.old = new
        self.history.append(change)
        for w in list(self.watches):
            w.offer(change)
        return copy.deepcopy(new)

    def _validate_name(self, rt: ResourceType, name: str) -> None:
        pattern, what = (_DNS_LABEL, "RFC 1123 label") if rt is NS else (_DNS_SUBDOMAIN, "RFC 1123 subdomain")
        if not pattern.match(name):
            raise invalid(rt, name, "metadata.name", f'Invalid value: "{name}": a lowercase {what} must consist '
                          "of lower case alphanumeric characters, '-' or '.', and must start and end with an "
                          "alphanumeric character")

    def _normalise(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        """What the server's strategies set on every write."""
        meta = obj["metadata"]
        for k in ("labels", "annotations"):
            if meta.get(k) == {}:
                del meta[k]
        if rt is NS:
            meta.setdefault("labels", {})[NS_NAME_LABEL] = meta["name"]
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj.setdefault("status", {}).setdefault("phase", "Active")

    def create(self, rt: ResourceType, ns: str, body: Any, *, keep_status: bool = True,
               opts: Options | None = None) -> dict[str, Any]:
        """POST: a new object with uid, creationTimestamp, resourceVersion (and generation 1 where kept).
        `keep_status=False` drops a client-sent status as the real server does for kinds with /status."""
        opts = opts or Options()
        with self.lock:
            obj = self._prepare_new(rt, ns, body)
            if not keep_status and rt.status:
                obj.pop("status", None)
                if rt.kind == "Pod":
                    obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
            meta = obj["metadata"]
            if (meta.get("namespace", ""), meta["name"]) in self._bucket(rt):
                raise ApiError(409, "AlreadyExists", f'{rt.qualified} "{meta["name"]}" already exists',
                               _details(rt, meta["name"]))
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = _now()
            for k in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion"):
                meta.pop(k, None)
            if rt.generation:
                meta["generation"] = 1
            else:
                meta.pop("generation", None)
            self._normalise(rt, obj)
            obj = self._admit(rt, obj, None, "", opts)
            if rt is CRDS:
                self._check_crd(obj)
                obj["status"] = self._crd_status(obj)
            created = self._commit(rt, "ADDED", None, obj, opts)
            if rt is CRDS and not opts.dry_run:
                self.catalogue.install(created)
            return created

    def _prepare_new(self, rt: ResourceType, ns: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request(f"the body of the request is not a {rt.kind} object")
        obj = copy.deepcopy(body)
        api, kind = obj.get("apiVersion"), obj.get("kind")
        if (api and api != rt.group_version) or (kind and kind != rt.kind):
            raise bad_request(f"the API version in the data ({api}) does not match the expected API version "
                              f"({rt.group_version})" if api != rt.group_version else
                              f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})")
        obj["apiVersion"], obj["kind"] = rt.group_version, rt.kind
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != ns:
                raise bad_request("the namespace of the provided object does not match the namespace sent on "
                                  "the request")
            meta["namespace"] = ns
            if ("", ns) not in self._bucket(NS):
                raise not_found(NS, ns)
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise invalid(rt, "", "metadata.name", "Required value: name or generateName is required")
            meta["name"] = meta["generateName"] + "".join(random.choices(_NAME_CHARS, k=5))
        self._validate_name(rt, meta["name"])
        return obj

    def update(self, rt: ResourceType, ns: str, name: str, body: Any, *, subresource: str = "",
               from_api: bool = True, opts: Options | None = None) -> tuple[dict[str, Any], bool]:
        """PUT (also the last step of PATCH); returns (object, created)."""
        opts = opts or Options()
        with self.lock:
            if not isinstance(body, dict):
                raise bad_request(f"the body of the request is not a {rt.kind} object")
            meta = body.get("metadata") or {}
            if meta.get("name") != name:
                raise bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the URL "
                                  f"({name})")
            if rt.namespaced and meta.get("namespace") not in (None, "", ns):
                raise bad_request("the namespace of the provided object does not match the namespace sent on "
                                  "the request")
            old = self._bucket(rt).get((ns, name))
            if old is None:
                if rt.create_on_update and not subresource:
                    return self.create(rt, ns, body, keep_status=not from_api, opts=opts), True
                raise not_found(rt, name)
            wanted = meta.get("resourceVersion")
            if not wanted and not rt.unconditional_update:
                raise invalid(rt, name, "metadata.resourceVersion",
                              "Invalid value: 0x0: must be specified for an update")
            if wanted and wanted != old["metadata"]["resourceVersion"]:
                raise conflict(rt, name, STALE)
            new = self._prepare_update(rt, old, body, subresource, from_api)
            new = self._admit(rt, new, old, subresource, opts)
            if rt is CRDS and not subresource:
                self._check_crd(new)
                new["status"] = self._crd_status(new)
            if self._same(old, new):
                return copy.deepcopy(old), False  # a no-op write: no new resourceVersion, no event
            if (old["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers")
                    and not (rt is PODS and old["metadata"].get("deletionGracePeriodSeconds"))):
                return self._commit(rt, "DELETED", old, new, opts), False  # the last finalizer is gone
            updated = self._commit(rt, "MODIFIED", old, new, opts)
            if rt is CRDS and not opts.dry_run:
                self.catalogue.install(updated)
            return updated, False

    def _prepare_update(self, rt: ResourceType, old: dict[str, Any], body: dict[str, Any], subresource: str,
                        from_api: bool) -> dict[str, Any]:
        if subresource == "status":
            new = copy.deepcopy(old)  # only status changes through /status
            if "status" in body:
                new["status"] = copy.deepcopy(body["status"])
            else:
                new.pop("status", None)
            return new
        new = copy.deepcopy(body)
        new["apiVersion"], new["kind"] = rt.group_version, rt.kind
        meta, old_meta = new.setdefault("metadata", {}), old["metadata"]
        for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "namespace"):
            if k in old_meta:
                meta[k] = old_meta[k]
            else:
                meta.pop(k, None)
        if rt.status and from_api:  # the main resource ignores status (it has its own endpoint)
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        if rt.generation:
            generation = old_meta.get("generation", 1)
            if self._spec(old) != self._spec(new):
                generation += 1
            meta["generation"] = generation
        else:
            meta.pop("generation", None)
        self._normalise(rt, new)
        return new

    def _admit(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None, subresource: str,
               opts: Options) -> dict[str, Any]:
        """A custom resource through its CRD's schema: pruned, defaulted, validated (422 on failure);
        unknown fields are errors (400) with fieldValidation=Strict, warnings with Warn."""
        if opts.field_validation not in FIELD_VALIDATION:
            raise bad_request(f'fieldValidation: Unsupported value: "{opts.field_validation}": supported values: '
                              + ", ".join(f'"{v}"' for v in FIELD_VALIDATION))
        if not rt.custom or rt.schema is None:
            return obj
        try:
            admission = schema.admit(rt.schema, obj, only="status" if subresource == "status" else None)
        except schema.CelUnsupported as exc:
            raise FakeLimit(f"fakekube cannot evaluate the CEL rule {exc}") from None
        name = obj["metadata"].get("name", "")
        if admission.pruned and opts.field_validation != "Ignore":
            unknown = [f'unknown field "{f}"' for f in admission.pruned]
            if opts.field_validation == "Strict":
                raise bad_request(f"{rt.kind} in version \"{rt.version}\" cannot be handled as a {rt.kind}: "
                                  f"strict decoding error: {', '.join(unknown)}")
            opts.warnings.extend(unknown)
        if old is not None and subresource != "status":  # the status is not the main resource's to judge
            admission.causes = [c for c in admission.causes if not (c.field == "status" or
                                                                     c.field.startswith("status."))]
        if admission.causes:
            raise invalid_causes(rt, name, admission.causes)
        return admission.obj

    def _check_crd(self, crd: dict[str, Any]) -> None:
        """The checks of a CRD this fake relies on (the real server checks much more)."""
        spec, name = crd.get("spec") or {}, crd["metadata"]["name"]
        names = spec.get("names") or {}
        causes = []
        if not spec.get("group") or not names.get("plural") or not names.get("kind"):
            causes.append(schema.Cause("spec", "FieldValueRequired", "Required value: group, names.plural and "
                                       "names.kind"))
        elif name != f"{names['plural']}.{spec['group']}":
            causes.append(schema.Cause("metadata.name", "FieldValueInvalid", f'Invalid value: "{name}": must be '
                                       "spec.names.plural+\".\"+spec.group"))
        if spec.get("scope") not in ("Cluster", "Namespaced"):
            causes.append(schema.Cause("spec.scope", "FieldValueNotSupported", f'Unsupported value: '
                                       f'"{spec.get("scope")}": supported values: "Cluster", "Namespaced"'))
        versions = spec.get("versions") or []
        if sum(1 for v in versions if v.get("storage")) != 1:
            causes.append(schema.Cause("spec.versions", "FieldValueInvalid", "Invalid value: must have exactly "
                                       "one version marked as storage version"))
        for i, version in enumerate(versions):
            root = ((version.get("schema") or {}).get("openAPIV3Schema"))
            if not isinstance(root, dict):
                causes.append(schema.Cause(f"spec.versions[{i}].schema.openAPIV3Schema", "FieldValueRequired",
                                           "Required value: schemas are required"))
                continue
            for rule in schema.rules(root):
                problem = schema.compile_rule(rule.get("rule", ""))
                if problem:
                    causes.append(schema.Cause(f"spec.versions[{i}].schema.openAPIV3Schema",
                                               "FieldValueInvalid", f"Invalid value: compilation failed: {problem}"))
        if causes:
            raise invalid_causes(CRDS, name, causes)
        for rt in self.catalogue.all():
            if rt.crd != name and (rt.group, rt.plural) == (spec["group"], names["plural"]):
                raise invalid_causes(CRDS, name, [schema.Cause("spec.names.plural", "FieldValueInvalid",
                                                               "Invalid value: is already in use")])

    @staticmethod
    def _crd_status(crd: dict[str, Any]) -> dict[str, Any]:
        now = _now()
        names = dict(crd["spec"]["names"])
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", names["kind"] + "List")
        conditions = [{"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": now}
                      for t, r, m in (("NamesAccepted", "NoConflicts", "no conflicts found"),
                                      ("Established", "InitialNamesAccepted", "the initial names have been accepted"))]
        return {"acceptedNames": names, "conditions": conditions,
                "storedVersions": [v["name"] for v in crd["spec"]["versions"] if v.get("storage")]}

    def _delete_crd(self, old: dict[str, Any], opts: Options) -> dict[str, Any]:
        """Terminating, then every custom resource of its kind, then the CRD: the kind is served no more."""
        name = old["metadata"]["name"]
        terminating = copy.deepcopy(old)
        terminating["metadata"]["deletionTimestamp"] = _now()
        terminating = self._commit(CRDS, "MODIFIED", old, terminating, opts)
        if opts.dry_run:
            return terminating
        for rt in self.catalogue.of_crd(name):
            for obj in list(self._bucket(rt).values()):
                self._commit(rt, "DELETED", obj, obj)
        for rt in self.catalogue.remove(name):
            for w in [w for w in self.watches if w.rt.key == rt.key]:
                self.watches.discard(w)
                w.queue.put(Watch.END)
        current = self._bucket(CRDS)[("", name)]
        self._commit(CRDS, "DELETED", current, current)
        return terminating

    @staticmethod
    def _spec(obj: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}

    @staticmethod
    def _same(old: dict[str, Any], new: dict[str, Any]) -> bool:
        a, b = copy.deepcopy(old), copy.deepcopy(new)
        for o in (a, b):
            o["metadata"].pop("resourceVersion", None)
            o["metadata"].pop("managedFields", None)
        return a == b

    def patch(self, rt: ResourceType, ns: str, name: str, content_type: str, body: bytes, *,
              subresource: str = "", field_manager: str | None = None, from_api: bool = True,
              opts: Options | None = None) -> tuple[dict[str, Any], bool]:
        media = content_type.split(";")[0].strip().lower()
        try:
            data = yaml.safe_load(body) if media == APPLY else json.loads(body or b"null")
        except (ValueError, yaml.YAMLError) as exc:
            raise bad_request(f"error decoding patch: {exc}") from None
        allowed = (JSON_PATCH, MERGE, APPLY) if rt.custom else (JSON_PATCH, MERGE, STRATEGIC, APPLY)
        if media not in allowed:
            raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - "
                           f"accepted media types include: {', '.join(allowed)}")
        with self.lock:
            old = self._bucket(rt).get((ns, name))
            if media == APPLY:
                if not field_manager:
                    raise invalid(rt, name, "fieldManager", "Required value: is required for apply patch")
                if old is None:
                    if subresource:
                        raise not_found(rt, name)
                    return self.create(rt, ns, data, keep_status=not from_api, opts=opts), True
            if old is None:
                raise not_found(rt, name)
            try:
                if media == JSON_PATCH:
                    patched = json_patch(old, data)
                elif media == STRATEGIC:
                    patched = strategic_merge_patch(old, data)
                else:
                    patched = merge_patch(old, data)
            except PatchError as exc:
                raise ApiError(exc.code, "Invalid" if exc.code == 422 else "BadRequest", str(exc)) from None
            if not isinstance(patched, dict):
                raise bad_request("the patch does not produce an object")
            patched.setdefault("metadata", {})
            if patched["metadata"].get("resourceVersion") is None:
                patched["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            return self.update(rt, ns, name, patched, subresource=subresource, from_api=from_api, opts=opts)

    def delete(self, rt: ResourceType, ns: str, name: str, options: dict[str, Any] | None = None, *,
               opts: Options | None = None) -> dict[str, Any]:
        """DELETE: immediate unless the object has finalizers (then it gets a deletionTimestamp and stays) or
        is a pod on a node: that is deleted gracefully (deletionTimestamp and deletionGracePeriodSeconds
        first; gone once its kubelet confirms with a grace period of 0, see `FakeKube.finish_deletion`)."""
        opts = opts or Options()
        with self.lock:
            old = self.current(rt, ns, name)
            pre = (options or {}).get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != old["metadata"]["uid"]:
                raise conflict(rt, name, f"Precondition failed: UID in precondition: {pre['uid']}, UID in object "
                               f"meta: {old['metadata']['uid']}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != old["metadata"]["resourceVersion"]:
                raise conflict(rt, name, f"Precondition failed: ResourceVersion in precondition: "
                               f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                               f"{old['metadata']['resourceVersion']}")
            grace = (options or {}).get("gracePeriodSeconds")
            if rt is PODS:
                return self._delete_pod(old, grace, opts)
            if old["metadata"].get("deletionTimestamp") and old["metadata"].get("finalizers"):
                return copy.deepcopy(old)
            if rt is NS:
                return self._delete_namespace(old, opts)
            if old["metadata"].get("finalizers"):
                new = copy.deepcopy(old)
                new["metadata"]["deletionTimestamp"] = _now()
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                return self._commit(rt, "MODIFIED", old, new, opts)
            if rt is CRDS:
                return self._delete_crd(old, opts)
            return self._commit(rt, "DELETED", old, old, opts)

    def _delete_pod(self, old: dict[str, Any], grace: Any, opts: Options) -> dict[str, Any]:
        """A pod bound to a node is only marked (its kubelet stops the containers, then confirms with grace
        0); an unscheduled pod, a grace period of 0, or a confirmation removes it (finalizers aside)."""
        meta = old["metadata"]
        if grace is None:
            grace = (old.get("spec") or {}).get("terminationGracePeriodSeconds", self.grace_default)
        grace = int(grace)
        scheduled = bool((old.get("spec") or {}).get("nodeName"))
        if scheduled and grace > 0:
            if meta.get("deletionTimestamp") and meta.get("deletionGracePeriodSeconds", grace) <= grace:
                return copy.deepcopy(old)  # already terminating (a shorter grace period would shorten it)
            new = copy.deepcopy(old)
            new["metadata"]["deletionTimestamp"] = (
                datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=grace)).strftime("%Y-%m-%dT%H:%M:%SZ")
            new["metadata"]["deletionGracePeriodSeconds"] = grace
            return self._commit(PODS, "MODIFIED", old, new, opts)
        if meta.get("finalizers"):
            new = copy.deepcopy(old)
            new["metadata"].setdefault("deletionTimestamp", _now())
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            return self._commit(PODS, "MODIFIED", old, new, opts)
        return self._commit(PODS, "DELETED", old, old, opts)

    def _delete_namespace(self, old: dict[str, Any], opts: Options) -> dict[str, Any]:
        """Terminating first, then everything in it, then the namespace (no finalizer controller to wait for)."""
        name = old["metadata"]["name"]
        terminating = copy.deepcopy(old)
        terminating["metadata"]["deletionTimestamp"] = _now()
        terminating["status"] = {"phase": "Terminating"}
        terminating = self._commit(NS, "MODIFIED", old, terminating, opts)
        if opts.dry_run:
            return terminating
        for rt in self.catalogue.all():
            if rt.namespaced:
                for key in [k for k in self._bucket(rt) if k[0] == name]:
                    obj = self._bucket(rt)[key]
                    self._commit(rt, "DELETED", obj, obj)
        current = self._bucket(NS)[("", name)]
        self._commit(NS, "DELETED", current, current)
        return terminating

    def delete_collection(self, rt: ResourceType, ns: str | None, labels: str | None,
                          fields: str | None, *, opts: Options | None = None) -> dict[str, Any]:
        with self.lock:
            listed = self.list(rt, ns, labels=labels, fields=fields)
            deleted = []
            for item in listed["items"]:
                m = item["metadata"]
                deleted.append(self.delete(rt, m.get("namespace", ""), m["name"], opts=opts))
            listed["items"] = deleted
            listed["metadata"] = {"resourceVersion": str(self.rv)}
            return listed

    # --- watching ---

    def watch(self, rt: ResourceType, ns: str | None, *, labels: str | None, fields: str | None,
              resource_version: str | None, send_initial: bool, bookmarks: bool) -> Watch:
        """Open a watch: synthetic ADDED events for the current state (no resourceVersion, "0", or
        sendInitialEvents), or the history after `resource_version`, or a 410 ERROR if that is compacted."""
        w = Watch(rt, ns, labels, fields)
        with self.lock:
            if resource_version in (None, "", "0") or send_initial:
                for obj in self.list(rt, ns, labels=labels, fields=fields)["items"]:
                    obj["apiVersion"], obj["kind"] = rt.group_version, rt.kind
                    w.event("ADDED", obj)
                if send_initial and bookmarks:
                    w.event("BOOKMARK", self.bookmark_object(rt, initial_end=True))
            else:
                try:
                    since = int(resource_version)
                except ValueError:
                    raise bad_request(f"invalid resource version: {resource_version!r}") from None
                if since < self.base_rv:
                    gone = ApiError(410, "Expired", f"too old resource version: {since} ({self.base_rv + 1})")
                    w.event("ERROR", gone.status)
                    w.queue.put(Watch.END)
                    return w
                for change in self.history:
                    if change.rv > since:
                        w.offer(change)
            self.watches.add(w)
        return w

    def bookmark_object(self, rt: ResourceType, initial_end: bool = False) -> dict[str, Any]:
        meta: dict[str, Any] = {"resourceVersion": str(self.rv)}
        if initial_end:
            meta["annotations"] = {INITIAL_EVENTS_END: "true"}
        return {"kind": rt.kind, "apiVersion": rt.group_version, "metadata": meta}

    def bookmark(self, w: Watch, then_end: bool = False) -> None:
        """Queue a BOOKMARK at the current version behind every change already queued for `w`."""
        with self.lock:
            w.event("BOOKMARK", self.bookmark_object(w.rt))
            if then_end:
                w.queue.put(Watch.END)

    def close_watch(self, w: Watch) -> None:
        with self.lock:
            self.watches.discard(w)

    def drop_watches(self, abrupt: bool) -> int:
        with self.lock:
            dropped = list(self.watches)
            self.watches.clear()
        for w in dropped:
            w.queue.put(("DROP", abrupt))
        return len(dropped)

    def compact(self) -> None:
        """Forget the history: watches and paged lists from older resourceVersions get 410 Gone."""
        with self.lock:
            self.base = {k: dict(v) for k, v in self.objects.items()}
            self.history.clear()
            self.base_rv = self.rv

    def rbac_objects(self) -> list[tuple[str, dict[str, Any]]]:
        """The stored Roles, ClusterRoles and bindings (kind, object), for the authorizer."""
        with self.lock:
            return [(rt.kind, obj) for rt in self.catalogue.all() if rt.group == "rbac.authorization.k8s.io"
                    for obj in self._bucket(rt).values()]

    def all_objects(self) -> Iterator[tuple[ResourceType, dict[str, Any]]]:
        with self.lock:
            for rt in self.catalogue.all():
                for obj in self._bucket(rt).values():
                    yield rt, copy.deepcopy(obj)

