"""Deterministic synthetic clusters for benchmarks: Kubernetes-shaped documents that go through the same
loader as real snapshots. Same parameters and seed, same cluster."""

from __future__ import annotations

import ipaddress
import json
import random
from typing import Any

EPG_KEY = "opflex.cisco.com/endpoint-group"
GROUP = "epgbridge.io/v1alpha1"


def pod_ip(n: int, nodes: int, pods: int) -> str:
    """Pod number n (on node n % nodes) gets the next address of its node's block, as node IPAM does: the pods
    of one deployment or namespace are scattered over the nodes' blocks (at least /24s, within 10.0.0.0/8)."""
    per_node = -(-pods // nodes) + 2
    block = max(256, 1 << (per_node - 1).bit_length())
    if nodes * block > 1 << 24:
        raise ValueError(f"{pods} pods on {nodes} nodes do not fit in 10.0.0.0/8")
    return str(ipaddress.IPv4Address((10 << 24) + (n % nodes) * block + n // nodes + 1))


def synthetic_cluster(pods: int = 10_000, namespaces: int = 100, policies: int = 1_000, epgs: int = 500,
                      contracts: int = 2_000, nodes: int = 50, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    docs: list[dict[str, Any]] = []
    tenants = [f"t{i}" for i in range(max(1, epgs // 50))]
    epg_refs = [(tenants[i % len(tenants)], f"ap{i % 5}", f"epg{i}") for i in range(epgs)]
    contract_refs = [(rng.choice([*tenants, "common"]), f"c{i}") for i in range(contracts)]

    for i, (tenant, name) in enumerate(contract_refs):
        entries = [{"name": f"e{j}", "protocol": rng.choice(["tcp", "udp"]),
                    "destinationPorts": str(rng.choice([80, 443, 5432, 8080, 9000 + j]))}
                   for j in range(rng.randint(1, 3))]
        filters = [{"name": f"f{i}", "entries": entries}]
        if rng.random() < 0.1:
            filters.append({"name": f"f{i}-deny", "action": "deny",
                            "entries": [{"name": "d", "protocol": "tcp", "destinationPorts": "22"}]})
        docs.append({"apiVersion": GROUP, "kind": "Contract", "metadata": {"name": f"{tenant}-{name}"},
                     "spec": {"tenant": tenant, "name": name,
                              "scope": rng.choice(["context", "tenant", "global", "application-profile"]),
                              "subjects": [{"name": "s", "filters": filters}]}})
    for tenant, ap, name in epg_refs:
        docs.append({"apiVersion": GROUP, "kind": "EndpointGroup", "metadata": {"name": f"{tenant}-{ap}-{name}"},
                     "spec": {"tenant": tenant, "applicationProfile": ap, "name": name,
                              "provides": [c for _, c in rng.sample(contract_refs, 4)],
                              "consumes": [c for _, c in rng.sample(contract_refs, 4)]}})
    ns_names = [f"ns{i}" for i in range(namespaces)]
    for ns in ns_names:
        meta: dict[str, Any] = {"name": ns, "labels": {"team": f"team{rng.randrange(10)}"}}
        if rng.random() < 0.5:
            meta["annotations"] = {EPG_KEY: json.dumps(dict(zip(("tenant", "app-profile", "name"),
                                                                rng.choice(epg_refs), strict=True)))}
        docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": meta})
    apps = [f"app{i}" for i in range(20)]
    per_deploy = 10
    for d in range(max(1, pods // per_deploy)):
        ns = ns_names[d % namespaces]
        app = apps[d % len(apps)]
        deploy = f"d{d}"
        dmeta: dict[str, Any] = {"name": deploy, "namespace": ns, "creationTimestamp": "2026-01-01T00:00:00Z"}
        if rng.random() < 0.7:
            dmeta["annotations"] = {EPG_KEY: json.dumps({"name": rng.choice(epg_refs)[2]})}
        docs.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": dmeta,
                     "spec": {"selector": {"matchLabels": {"app": app, "d": deploy}}}})
        docs.append({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                     "metadata": {"name": f"{deploy}-rs", "namespace": ns, "ownerReferences": [
                         {"apiVersion": "apps/v1", "kind": "Deployment", "name": deploy, "controller": True}]},
                     "spec": {"selector": {"matchLabels": {"app": app, "d": deploy}}}})
        for r in range(per_deploy):
            n = d * per_deploy + r
            if n >= pods:
                break
            docs.append({"apiVersion": "v1", "kind": "Pod", "metadata": {
                "name": f"{deploy}-{r}", "namespace": ns, "labels": {"app": app, "d": deploy,
                                                                     "tier": rng.choice(["fe", "be", "db"])},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{deploy}-rs",
                                     "controller": True}]},
                "spec": {"nodeName": f"node{n % nodes}", "containers": [{"name": "c", "ports": [
                    {"containerPort": 8080, "name": "http"}, {"containerPort": 9100, "name": "metrics"}]}]},
                "status": {"podIP": pod_ip(n, nodes, pods)}})
    for p in range(policies):
        ns = ns_names[p % namespaces]
        kind = rng.randrange(4)
        peer: dict[str, Any]
        if kind == 0:
            peer = {"podSelector": {"matchLabels": {"app": rng.choice(apps)}}}
        elif kind == 1:
            peer = {"namespaceSelector": {"matchLabels": {"team": f"team{rng.randrange(10)}"}}}
        elif kind == 2:
            peer = {"namespaceSelector": {"matchLabels": {"team": f"team{rng.randrange(10)}"}},
                    "podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]}]}}
        else:
            peer = {"ipBlock": {"cidr": f"10.{rng.randrange(2)}.0.0/16", "except": [f"10.{rng.randrange(2)}.1.0/24"]}}
            peer["ipBlock"]["except"] = [peer["ipBlock"]["cidr"].replace(".0.0/16", ".1.0/24")]
        port: dict[str, Any] = rng.choice([{"port": 8080}, {"port": "http"}, {"port": 9000, "endPort": 9100},
                                           {"protocol": "UDP", "port": 53}])
        docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                     "metadata": {"name": f"np{p}", "namespace": ns},
                     "spec": {"podSelector": {"matchLabels": {"app": rng.choice(apps)}},
                              "ingress": [{"from": [peer], "ports": [port]}]}})
    return docs
