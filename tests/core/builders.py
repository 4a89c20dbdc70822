"""Small builders for Kubernetes-shaped test documents, and truth-table assertions.

Truth tables read like the upstream netpol e2e suite: one row per source, one column per destination,
`.` for allowed and `X` for denied.
"""

from __future__ import annotations

import json
from typing import Any

from contracts.engine import Engine
from contracts.loader import documents, load_cluster
from contracts.model import Model

EPG_KEY = "opflex.cisco.com/endpoint-group"
GROUP = "epgbridge.io/v1alpha1"


def epg_value(tenant: str | None = None, ap: str | None = None, name: str | None = None) -> str:
    body = {k: v for k, v in (("tenant", tenant), ("app-profile", ap), ("name", name)) if v is not None}
    return json.dumps(body)


def namespace(name: str, labels: dict[str, str] | None = None, epg: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels or {}}
    if epg is not None:
        meta["annotations"] = {EPG_KEY: epg}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def pod(ns: str, name: str, ip: str | list[str] | None, labels: dict[str, str] | None = None, node: str = "n1",
        ports: list[dict[str, Any]] | None = None, epg: str | None = None,
        owners: list[dict[str, Any]] | None = None, host_network: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "labels": labels or {}}
    if epg is not None:
        meta["annotations"] = {EPG_KEY: epg}
    if owners is not None:
        meta["ownerReferences"] = owners
    spec: dict[str, Any] = {"nodeName": node, "containers": [{"name": "c", "ports": ports or []}]}
    if host_network:
        spec["hostNetwork"] = True
    doc: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
    if isinstance(ip, list):  # every address, the primary first (status.podIPs), as a dual-stack kubelet reports
        doc["status"] = {"podIP": ip[0], "podIPs": [{"ip": a} for a in ip]}
    elif ip is not None:
        doc["status"] = {"podIP": ip}
    return doc


def workload(kind: str, ns: str, name: str, selector: dict[str, Any] | None = None, epg: str | None = None,
             owners: list[dict[str, Any]] | None = None, created: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if epg is not None:
        meta["annotations"] = {EPG_KEY: epg}
    if owners is not None:
        meta["ownerReferences"] = owners
    if created is not None:
        meta["creationTimestamp"] = created
    spec = {"selector": selector} if selector is not None else {}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": spec}


def owner(kind: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": kind, "name": name, "controller": True, "uid": f"uid-{name}"}


def netpol(ns: str, name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("podSelector", {})
    if "policy_types" in spec:
        spec["policyTypes"] = spec.pop("policy_types")
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def endpoint_group(name: str, tenant: str = "kube", ap: str = "kubernetes", **spec: Any) -> dict[str, Any]:
    """An EndpointGroup open to pods of every namespace (`namespaceSelector: {}`), so that tests of other
    things may place pods by pod annotation; `namespaceSelector=None` leaves the selector out (closed)."""
    spec = {"tenant": tenant, "applicationProfile": ap, "namespaceSelector": {}, **spec}
    if spec["namespaceSelector"] is None:
        del spec["namespaceSelector"]
    return {"apiVersion": GROUP, "kind": "EndpointGroup", "metadata": {"name": name.lower()},
            "spec": {"name": name, **spec}}


def config(**spec: Any) -> dict[str, Any]:
    """The epgbridge.io Config object, e.g. config(tenants=["shop"], invalidAnnotation="fallback")."""
    return {"apiVersion": GROUP, "kind": "Config", "metadata": {"name": "epgbridge"}, "spec": spec}


def entry(name: str, protocol: str | int | None = None, ports: str | None = None, **extra: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"name": name, **extra}
    if protocol is not None:
        e["protocol"] = protocol
    if ports is not None:
        e["destinationPorts"] = ports
    return e


def contract(name: str, tenant: str = "kube", scope: str | None = None,
             permit: list[dict[str, Any]] | None = None, deny: list[dict[str, Any]] | None = None,
             filter_prefix: str | None = None) -> dict[str, Any]:
    prefix = filter_prefix or name
    filters = []
    if permit:
        filters.append({"name": f"{prefix}-permit", "entries": permit})
    if deny:
        filters.append({"name": f"{prefix}-deny", "action": "deny", "entries": deny})
    spec: dict[str, Any] = {"tenant": tenant, "name": name, "subjects": [{"name": "s", "filters": filters}]}
    if scope is not None:
        spec["scope"] = scope
    return {"apiVersion": GROUP, "kind": "Contract", "metadata": {"name": f"{tenant}-{name}".lower()}, "spec": spec}


def model(*docs: dict[str, Any]) -> Model:
    return Model(load_cluster(documents("test.yaml", docs)))


def engine(*docs: dict[str, Any]) -> Engine:
    return Engine(model(*docs))


def _short_names(eng: Engine) -> dict[str, str]:
    keys = sorted(p.key for p in eng.model.endpoints)
    short = {k: k.split("/", 1)[1] for k in keys}
    return short if len(set(short.values())) == len(short) else {k: k for k in keys}


def truth_table(eng: Engine, probe: str, rows: list[str] | None = None, cols: list[str] | None = None,
                family: int | None = None) -> str:
    """The engine's matrix as a table of short pod names (without the namespace where that is unique), each pod
    at its address of `family` (default: its first): `.` allowed, `X` denied, `~` allowed but denied once the
    objects in audit mode are enforced."""
    port_text, _, proto = probe.partition("/")
    short = _short_names(eng)
    by_short = {v: k for k, v in short.items()}
    rows = rows or list(short.values())
    cols = cols or list(short.values())
    width = max(len(n) for n in rows)
    lines = [" " * width + " " + " ".join(cols)]
    for s in rows:
        cells = []
        for d in cols:
            v = eng.decide(eng.endpoint(by_short[s], family), eng.endpoint(by_short[d], family), int(port_text),
                           proto.upper())
            cells.append(("~" if v.would_drop else "." if v.allowed else "X").ljust(len(d)))
        lines.append(s.ljust(width) + " " + " ".join(cells))
    return "\n".join(line.rstrip() for line in lines)


def assert_matrix(eng: Engine, probe: str, expected: str, family: int | None = None) -> None:
    """Compare with an expected table; its header fixes the columns and its first column the rows (each pod at
    its address of `family`, default: its first)."""
    lines = [r.split() for r in expected.strip("\n").splitlines() if r.strip()]
    cols, rows = lines[0], [r[0] for r in lines[1:]]
    width = max(len(n) for n in rows)
    want = [" " * width + " " + " ".join(cols)]
    for r in lines[1:]:
        want.append(r[0].ljust(width) + " " + " ".join(c.ljust(len(n)) for c, n in zip(r[1:], cols, strict=True)))
    want_text = "\n".join(line.rstrip() for line in want)
    got = truth_table(eng, probe, rows, cols, family)
    where = "" if family is None else f" IPv{family}"
    assert got == want_text, f"{probe}{where}\nexpected:\n{want_text}\n\ngot:\n{got}"
