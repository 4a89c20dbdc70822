"""The resource types the fake API server serves, and its discovery documents.

Each ResourceType is what the real server's discovery would say about it (group, version, plural, kind,
scope, verbs, subresources), plus the few strategy flags that change behaviour (AllowCreateOnUpdate,
AllowUnconditionalUpdate, whether DELETE returns the object, whether `generation` is kept).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
CRD_GROUP = "epgbridge.io"
SERVER_VERSION = {
    "major": "1", "minor": "31", "gitVersion": "v1.31.0-fakekube", "gitCommit": "0" * 40,
    "gitTreeState": "clean", "buildDate": "2024-08-13T00:00:00Z", "goVersion": "go1.22.5",
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


RESOURCES: tuple[ResourceType, ...] = (
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
    _rt(CRD_GROUP, "v1alpha1", "endpointgroups", "EndpointGroup", False, short_names=("epg",), status=True,
        generation=True, unconditional_update=False, delete_returns_object=True, custom=True),
    _rt(CRD_GROUP, "v1alpha1", "contracts", "Contract", False, short_names=("brc",), status=True,
        generation=True, unconditional_update=False, delete_returns_object=True, custom=True),
)

BY_PATH: dict[tuple[str, str, str], ResourceType] = {(r.group, r.version, r.plural): r for r in RESOURCES}
BY_KIND: dict[str, ResourceType] = {}
for _r in RESOURCES:
    BY_KIND.setdefault(_r.kind, _r)  # "Event" means core/v1 events; the events.k8s.io one by (apiVersion, kind)
BY_API_KIND: dict[tuple[str, str], ResourceType] = {(r.group_version, r.kind): r for r in RESOURCES}

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


def resolve(api_version: str, kind: str) -> ResourceType | None:
    return BY_API_KIND.get((api_version, kind))


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    """The APIResourceList of /api/v1 or /apis/GROUP/VERSION."""
    found = [r for r in RESOURCES if r.group == group and r.version == version]
    if not found:
        return None
    out: list[dict[str, Any]] = []
    for r in found:
        entry: dict[str, Any] = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                                 "kind": r.kind, "verbs": VERBS}
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        out.append(entry)
        if r.status:
            out.append({"name": f"{r.plural}/status", "singularName": "", "namespaced": r.namespaced,
                        "kind": r.kind, "verbs": ["get", "patch", "update"]})
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}


def _group_doc(group: str) -> dict[str, Any]:
    versions = sorted({r.version for r in RESOURCES if r.group == group})
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": gvs, "preferredVersion": gvs[0]}


def group_doc(group: str) -> dict[str, Any] | None:
    return _group_doc(group) if any(r.group == group for r in RESOURCES if r.group) else None


def group_list() -> dict[str, Any]:
    groups = sorted({r.group for r in RESOURCES if r.group})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group_doc(g) for g in groups]}


def core_versions() -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}
