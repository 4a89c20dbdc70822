"""The resource types the fake API server serves, and its discovery documents.

Each ResourceType is what the real server's discovery would say about it (group, version, plural, kind,
scope, verbs, subresources), plus the few strategy flags that change behaviour (AllowCreateOnUpdate,
AllowUnconditionalUpdate, whether DELETE returns the object, whether `generation` is kept).

The built-in kinds are fixed (`BUILTIN`); custom resources come and go with their CustomResourceDefinitions,
so the `Catalogue` (one per server) holds both and answers discovery from what is installed right now.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
CRD_API_GROUP = "apiextensions.k8s.io"
SERVER_VERSION = {
    "major": "1", "minor": "37", "emulationMajor": "1", "emulationMinor": "37", "minCompatibilityMajor": "1",
    "minCompatibilityMinor": "36", "gitVersion": "v1.37.0-fakekube", "gitCommit": "0" * 40,
    "gitTreeState": "clean", "buildDate": "2026-08-26T00:00:00Z", "goVersion": "go1.26.0",
    "compiler": "gc", "platform": "linux/amd64",
}


@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    status: bool = False  # has a /status subresource (status is then ignored on the main resource)
    generation: bool = False  # metadata.generation kept and bumped on changes outside metadata and status
    create_on_update: bool = False  # PUT to a missing object creates it
    unconditional_update: bool = True  # PUT without metadata.resourceVersion allowed
    delete_returns_object: bool = False  # DELETE answers with the object rather than a Status
    custom: bool = False  # a custom resource: no strategic merge patch
    crd: str = ""  # the CustomResourceDefinition that defines it
    schema: dict[str, Any] | None = field(default=None, compare=False, hash=False)  # openAPIV3Schema
    columns: tuple[dict[str, Any], ...] = field(default=(), compare=False, hash=False)  # additionalPrinterColumns
    categories: tuple[str, ...] = ()

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """`pods`, `deployments.apps`: how the server names the resource in error messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def key(self) -> tuple[str, str]:
        """Storage identity: the same resource served in two versions would share it."""
        return (self.group, self.plural)


def _rt(group: str, version: str, plural: str, kind: str, namespaced: bool, **kw: Any) -> ResourceType:
    return ResourceType(group, version, plural, kind, namespaced, singular=kind.lower(), **kw)


BUILTIN: tuple[ResourceType, ...] = (
    _rt("", "v1", "namespaces", "Namespace", False, short_names=("ns",), status=True),
    _rt("", "v1", "pods", "Pod", True, short_names=("po",), status=True, generation=True,
        delete_returns_object=True),
    _rt("", "v1", "events", "Event", True, short_names=("ev",), create_on_update=True),
    _rt("", "v1", "configmaps", "ConfigMap", True, short_names=("cm",)),
    _rt("", "v1", "secrets", "Secret", True),
    _rt("", "v1", "nodes", "Node", False, short_names=("no",), status=True),
    _rt("apps", "v1", "deployments", "Deployment", True, short_names=("deploy",), status=True, generation=True),
    _rt("apps", "v1", "statefulsets", "StatefulSet", True, short_names=("sts",), status=True, generation=True),
    _rt("apps", "v1", "daemonsets", "DaemonSet", True, short_names=("ds",), status=True, generation=True),
    _rt("apps", "v1", "replicasets", "ReplicaSet", True, short_names=("rs",), status=True, generation=True),
    _rt("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, short_names=("netpol",),
        generation=True),
    _rt("coordination.k8s.io", "v1", "leases", "Lease", True, create_on_update=True),
    _rt("events.k8s.io", "v1", "events", "Event", True, short_names=("ev",), create_on_update=True),
    _rt("", "v1", "serviceaccounts", "ServiceAccount", True, short_names=("sa",)),
    _rt("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    _rt("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    _rt("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    _rt("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    _rt(CRD_API_GROUP, "v1", "customresourcedefinitions", "CustomResourceDefinition", False,
        short_names=("crd", "crds"), status=True, generation=True),
)

# Field selectors each resource supports beyond metadata.name and metadata.namespace (as the real server
# registers them); anything else is a 400, as there.
FIELD_LABELS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "pods"): ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                   "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"),
    ("", "events"): ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                     "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                     "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"),
    ("events.k8s.io", "events"): ("regarding.kind", "regarding.namespace", "regarding.name", "regarding.uid",
                                  "reason", "reportingController", "type"),
    ("", "namespaces"): ("status.phase",),
    ("", "nodes"): ("spec.unschedulable",),
    ("", "secrets"): ("type",),
    ("apps", "replicasets"): ("status.replicas",),
}
_BY_PATH = {(r.group, r.version, r.plural): r for r in BUILTIN}
NAMESPACES = _BY_PATH[("", "v1", "namespaces")]
PODS = _BY_PATH[("", "v1", "pods")]
CRDS = _BY_PATH[(CRD_API_GROUP, "v1", "customresourcedefinitions")]


def custom_types(crd: dict[str, Any]) -> list[ResourceType]:
    """The resource types a (valid) CustomResourceDefinition serves: one per served version."""
    spec = crd["spec"]
    names = spec["names"]
    out = []
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or {}
        out.append(ResourceType(
            spec["group"], version["name"], names["plural"], names["kind"], spec.get("scope") == "Namespaced",
            singular=names.get("singular") or names["kind"].lower(), short_names=tuple(names.get("shortNames") or ()),
            status="status" in subresources, generation=True, unconditional_update=False,
            delete_returns_object=True, custom=True, crd=crd["metadata"]["name"],
            schema=(version.get("schema") or {}).get("openAPIV3Schema"),
            columns=tuple(version.get("additionalPrinterColumns") or ()),
            categories=tuple(names.get("categories") or ())))
    return out


class Catalogue:
    """What this server serves right now: the built-in kinds plus those of the installed CRDs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._custom: dict[str, list[ResourceType]] = {}  # CRD name -> its served versions

    def all(self) -> list[ResourceType]:
        with self._lock:
            return [*BUILTIN, *(rt for rts in self._custom.values() for rt in rts)]

    def install(self, crd: dict[str, Any]) -> None:
        with self._lock:
            self._custom[crd["metadata"]["name"]] = custom_types(crd)

    def remove(self, crd_name: str) -> list[ResourceType]:
        with self._lock:
            return self._custom.pop(crd_name, [])

    def of_crd(self, crd_name: str) -> list[ResourceType]:
        with self._lock:
            return list(self._custom.get(crd_name, []))

    def by_path(self, group: str, version: str, plural: str) -> ResourceType | None:
        return next((r for r in self.all() if (r.group, r.version, r.plural) == (group, version, plural)), None)

    def resolve(self, api_version: str, kind: str) -> ResourceType | None:
        return next((r for r in self.all() if (r.group_version, r.kind) == (api_version, kind)), None)

    def find(self, name: str) -> ResourceType | None:
        """A kind ("Pod": core/v1 for "Event"), a plural ("pods") or a qualified plural ("deployments.apps")."""
        found = self.all()
        return (next((r for r in found if r.kind == name), None)
                or next((r for r in found if name in (r.plural, r.qualified)), None))

    def resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        """The APIResourceList of /api/v1 or /apis/GROUP/VERSION."""
        found = [r for r in self.all() if r.group == group and r.version == version]
        if not found:
            return None
        out: list[dict[str, Any]] = []
        for r in found:
            entry: dict[str, Any] = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                                     "kind": r.kind, "verbs": VERBS}
            if r.short_names:
                entry["shortNames"] = list(r.short_names)
            if r.categories:
                entry["categories"] = list(r.categories)
            out.append(entry)
            if r.status:
                out.append({"name": f"{r.plural}/status", "singularName": "", "namespaced": r.namespaced,
                            "kind": r.kind, "verbs": ["get", "patch", "update"]})
        gv = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}

    def _group_doc(self, group: str) -> dict[str, Any]:
        versions = sorted({r.version for r in self.all() if r.group == group})
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": gvs, "preferredVersion": gvs[0]}

    def group_doc(self, group: str) -> dict[str, Any] | None:
        return self._group_doc(group) if any(r.group == group for r in self.all() if r.group) else None

    def group_list(self) -> dict[str, Any]:
        groups = sorted({r.group for r in self.all() if r.group})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [self._group_doc(g) for g in groups]}


def core_versions() -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}
